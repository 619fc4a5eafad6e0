"""Injected failures of the capture receivers, set at run time through `PUT /api/faults`: a receiver that answers
an error status (a Slack outage answering 500) so that Alertmanager's retries can be tested.

    GET  /api/faults   -> {"fail": {"slack": 500}, "refused": {"slack": 3}}
    PUT  /api/faults   {"slack": 500, "pagerduty": 503}: replace the failures ({} heals); `refused` is kept

A refused request is counted in `refused` and not recorded as received: the sender must try again.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["FAILABLE", "ReceiverFaults", "ReceiverFaultsError"]

FAILABLE = ("slack", "discord", "pagerduty")  # the HTTP receivers (SMTP has its own error codes)


class ReceiverFaultsError(ValueError):
    """A fault body that is not {kind: status} with a known kind and a 4xx or 5xx status."""


class ReceiverFaults:
    """Thread-safe: set from a test's thread, read by the server's event loop."""

    def __init__(self) -> None:
        self._fail: dict[str, int] = {}
        self._refused: dict[str, int] = {}
        self._lock = threading.Lock()

    def set(self, body: object) -> None:
        if not isinstance(body, dict):
            raise ReceiverFaultsError('the body must be a JSON object such as {"slack": 500}')
        fail: dict[str, int] = {}
        for kind, status in body.items():
            if kind not in FAILABLE:
                raise ReceiverFaultsError(f"unknown receiver {kind!r}: one of {', '.join(FAILABLE)}")
            if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
                raise ReceiverFaultsError(f"{kind}: the status must be an integer from 400 to 599")
            fail[kind] = status
        with self._lock:
            self._fail = fail

    def refuse(self, kind: str) -> int | None:
        """The status to answer a request to `kind` with (and count it), or None to serve it."""
        with self._lock:
            status = self._fail.get(kind)
            if status is not None:
                self._refused[kind] = self._refused.get(kind, 0) + 1
            return status

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {"fail": dict(self._fail), "refused": dict(self._refused)}
