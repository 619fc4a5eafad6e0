"""What the capture receivers got: one record per request or message, valid or not, in arrival order."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["KINDS", "Received", "ReceivedStore"]

KINDS = ("slack", "discord", "pagerduty", "email")


@dataclass(frozen=True)
class Received:
    id: int
    kind: str  # one of KINDS
    received_at: datetime
    path: str  # the webhook path (its token part included), or the SMTP envelope recipients
    payload: Any  # the JSON body; for email: {from, to, subject, text, html, headers, auth_user}
    errors: tuple[str, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "receivedAt": self.received_at.isoformat(),
            "path": self.path,
            "valid": self.valid,
            "errors": list(self.errors),
            "payload": self.payload,
        }


class ReceivedStore:
    """Thread-safe: the servers add from their event loop, tests read from theirs."""

    def __init__(self, limit: int = 10_000) -> None:
        self._items: list[Received] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._limit = limit

    def add(self, kind: str, path: str, payload: Any, errors: list[str]) -> Received:
        with self._lock:
            item = Received(next(self._ids), kind, datetime.now(UTC), path, payload, tuple(errors))
            self._items.append(item)
            del self._items[: -self._limit]
            return item

    def items(self, kind: str | None = None) -> list[Received]:
        with self._lock:
            return [item for item in self._items if kind is None or item.kind == kind]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
