"""Idempotency keys, as Stripe keeps them.

A POST carrying `Idempotency-Key` that succeeded is remembered for 24 hours with a fingerprint of what was
asked (method, path, parameters); the same key with the same request gets the stored bytes back, the same
key with a different request is an `idempotency_error`. Only successful results are stored: validation
errors and injected faults are not (Stripe does not save a result when the endpoint never ran, nor its
500s), so retrying after them runs the request for real.

The official SDK adds a key to every POST, so this store sees one entry per create; it is bounded by age
and by count (oldest first) to stay flat under a benchmark.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.stripe.forms import FormDict, FormValue

__all__ = ["IdempotencyStore", "StoredResponse", "fingerprint"]

KEY_LIFETIME_SECONDS = 24 * 60 * 60


@dataclass(frozen=True, slots=True)
class StoredResponse:
    fingerprint: bytes
    status: int
    body: bytes
    stored_at: float


def fingerprint(method: str, path: str, params: FormDict) -> bytes:
    """Digest of a request's meaning: the same parameters in another order are the same request."""
    canonical = "\n".join(sorted(_flatten(params, "")))
    return hashlib.blake2b(f"{method} {path}\n{canonical}".encode(), digest_size=16).digest()


def _flatten(value: FormValue, prefix: str) -> list[str]:
    if isinstance(value, str):
        return [f"{prefix}={value}"]
    if isinstance(value, list):
        items: list[tuple[str, FormValue]] = [(str(i), v) for i, v in enumerate(value)]
    else:
        items = list(value.items())
    out: list[str] = []
    for key, item in items:
        out.extend(_flatten(item, f"{prefix}[{key}]" if prefix else key))
    return out


class IdempotencyStore:
    def __init__(
        self, max_keys: int, lifetime: float = KEY_LIFETIME_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_keys
        self._lifetime = lifetime
        self._clock = clock
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> StoredResponse | None:
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.stored_at > self._lifetime:
            del self._entries[key]
            return None
        return entry

    def put(self, key: str, print_: bytes, status: int, body: bytes) -> None:
        now = self._clock()
        self._entries[key] = StoredResponse(print_, status, body, now)
        # Entries are in insertion order, so the expired ones and the overflow are all at the front.
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if len(self._entries) <= self._max and now - oldest.stored_at <= self._lifetime:
                break
            self._entries.popitem(last=False)
