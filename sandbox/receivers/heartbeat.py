"""The dead man's switch: Alertmanager's webhook notifications of the always-firing Watchdog, as healthchecks.io or
Dead Man's Snitch would take them, and whether they stopped.

A heartbeat is a valid Alertmanager webhook payload (`validate_alertmanager_webhook`) with status `firing` and a
firing alert in it. A `resolved` notification is accepted (200) but is no heartbeat: a Watchdog that resolves means
Prometheus stopped sending it. The switch is *stale* when no heartbeat arrived within `stale_after` seconds (of the
last one, or of the receivers' start when none came yet).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["DEFAULT_STALE_AFTER_SECONDS", "HeartbeatState", "HeartbeatStore"]

# Three times the Watchdog route's repeat interval (1m, alerts/alertmanager.yml).
DEFAULT_STALE_AFTER_SECONDS = 180.0


@dataclass(frozen=True)
class HeartbeatState:
    started_at: datetime
    last_seen: datetime | None
    count: int
    stale_after: float
    stale: bool
    last_alertnames: tuple[str, ...]
    last_resolved_at: datetime | None
    rejected: int
    last_errors: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "startedAt": iso(self.started_at),
            "lastSeen": iso(self.last_seen),
            "count": self.count,
            "staleAfterSeconds": self.stale_after,
            "stale": self.stale,
            "alertnames": list(self.last_alertnames),
            "lastResolvedAt": iso(self.last_resolved_at),
            "rejected": self.rejected,
            "lastErrors": list(self.last_errors),
        }


class HeartbeatStore:
    """Thread-safe: the server records from its event loop, tests read from theirs."""

    def __init__(
        self,
        stale_after: float = DEFAULT_STALE_AFTER_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if stale_after <= 0:
            raise ValueError("stale_after is a positive number of seconds")
        self._clock = clock
        self._lock = threading.Lock()
        self._stale_after = stale_after
        self._started_at = clock()
        self._last_seen: datetime | None = None
        self._count = 0
        self._alertnames: tuple[str, ...] = ()
        self._last_resolved_at: datetime | None = None
        self._rejected = 0
        self._errors: tuple[str, ...] = ()

    def record(self, payload: dict[str, Any]) -> bool:
        """Record a valid payload; True when it is a heartbeat (firing), False for a resolve."""
        firing = [alert for alert in payload["alerts"] if alert.get("status") == "firing"]
        with self._lock:
            if payload["status"] != "firing" or not firing:
                self._last_resolved_at = self._clock()
                return False
            self._last_seen = self._clock()
            self._count += 1
            self._alertnames = tuple(sorted({str(alert["labels"].get("alertname", "")) for alert in firing}))
            return True

    def reject(self, errors: list[str]) -> None:
        with self._lock:
            self._rejected += 1
            self._errors = tuple(errors)

    def state(self) -> HeartbeatState:
        with self._lock:
            now = self._clock()
            since = self._last_seen or self._started_at
            return HeartbeatState(
                started_at=self._started_at,
                last_seen=self._last_seen,
                count=self._count,
                stale_after=self._stale_after,
                stale=now - since > timedelta(seconds=self._stale_after),
                last_alertnames=self._alertnames,
                last_resolved_at=self._last_resolved_at,
                rejected=self._rejected,
                last_errors=self._errors,
            )
