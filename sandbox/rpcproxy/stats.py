"""What the proxy saw and did, for `GET /_proxy/stats`. Only touched on the proxy's event loop: no locks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stats"]


@dataclass
class Stats:
    requests: int = 0  # HTTP requests on the JSON-RPC port (a batch counts once)
    calls: int = 0  # JSON-RPC calls in them (each member of a batch counts)
    forwarded: int = 0  # HTTP exchanges with the upstream
    upstream_errors: int = 0  # exchanges that failed (connection, timeout); answered 502
    invalid: int = 0  # request bodies that were not JSON-RPC (forwarded as they were)
    methods: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)  # injected faults by kind

    def to_json(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "requests": self.requests,
            "calls": self.calls,
            "forwarded": self.forwarded,
            "upstreamErrors": self.upstream_errors,
            "invalid": self.invalid,
            "methods": dict(self.methods),
            "faults": dict(self.faults),
        }
