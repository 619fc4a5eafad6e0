"""One lean ASGI middleware for what every request needs observed: request id, RED metrics, the access log.

It is plain ASGI (no BaseHTTPMiddleware) so it adds microseconds, not a task per request. It sits inside the
OpenTelemetry middleware, so the request's span is current here and its trace id can label the latency
exemplar and the access-log line.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payment.core.logs import REQUEST_CONTEXT, RequestContext
from payment.core.metrics import PaymentMetrics
from payment.core.telemetry import current_trace_id

__all__ = ["ObservabilityMiddleware"]

access_log = logging.getLogger("musdpay.access")

# Probes and scrapes would drown the access log; they are still measured.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: PaymentMetrics, *, exemplars: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.exemplars = exemplars

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        context = RequestContext(request_id=request_id, scope=scope)
        token = REQUEST_CONTEXT.set(context)
        status = 500
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        in_flight = self.metrics.http_requests_in_flight
        in_flight.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            in_flight.dec()
            route = context.route  # the template (`/api/v1/onramp/sessions/{session_id}`), never the raw path
            method = scope["method"]
            trace_id = current_trace_id() if self.exemplars else None
            self.metrics.http_request_duration.labels(method, route, str(status)).observe(
                elapsed, exemplar={"trace_id": trace_id} if trace_id else None
            )
            if scope["path"] not in QUIET_PATHS:
                access_log.info(
                    "%s %s %d",
                    method,
                    route,
                    status,
                    extra={"method": method, "status_code": status, "duration_ms": round(elapsed * 1000, 3)},
                )
            REQUEST_CONTEXT.reset(token)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text: Any = value.decode("latin-1")
            return text if _REQUEST_ID.match(text) else None
    return None
