"""One lean ASGI middleware for what every request needs observed: the server span, request id, RED metrics
and the access log.

It is plain ASGI (no BaseHTTPMiddleware), so it adds tens of microseconds, not a task per request. It opens the
request's server span itself instead of using opentelemetry-instrumentation-fastapi: with this FastAPI, that
middleware flattens the whole route tree on every request to name its span, and costs more than the rest of a
webhook's handling (measured with py-spy, see docs/benchmarks.md). The span follows the semantic conventions
(`http.request.method`, `http.route`, `http.response.status_code`, `url.path`) and continues a W3C
`traceparent`.
"""

from __future__ import annotations

import random
import re
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payment.core.logs import REQUEST_CONTEXT, AccessLog, RequestContext
from payment.core.metrics import PaymentMetrics
from payment.core.telemetry import current_trace_id

__all__ = ["ObservabilityMiddleware"]

# Probes and scrapes would drown the access log; they are still measured.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class _ScopeHeaders(Getter[Scope]):
    """Reads propagation headers (traceparent, tracestate, baggage) from an ASGI scope."""

    def get(self, carrier: Scope, key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for name, value in carrier.get("headers", ()) if name == wanted]
        return values or None

    def keys(self, carrier: Scope) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier.get("headers", ())]


_HEADERS = _ScopeHeaders()
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)


class ObservabilityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: PaymentMetrics,
        *,
        tracer: trace.Tracer | None = None,
        record_spans: bool = True,
        exemplars: bool = True,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer
        # False when spans go nowhere: the request then gets the unrecorded span the SDK would make for an
        # unsampled trace (its ids for the logs, the dApp's trace id continued), without the SDK's sampling and
        # attribute work.
        self.record_spans = record_spans
        self._ids = RandomIdGenerator()
        self.exemplars = exemplars
        self.access_log = AccessLog()
        # Histogram children by (method, route template, status): `labels()` validates and locks on every
        # call, a dictionary lookup does not. Bounded: routes are templates, methods and statuses are few.
        self._durations: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or f"{random.getrandbits(128):032x}"  # a correlation id, not a secret
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
        span = self._start_span(scope)
        span_token = otel_context.attach(trace.set_span_in_context(span)) if span is not None else None
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if span is not None:
                self._end_span(span, scope["method"], context.route, status)
            elapsed = time.perf_counter() - started
            in_flight.dec()
            route = context.route  # the template (`/api/v1/onramp/sessions/{session_id}`), never the raw path
            method = scope["method"]
            # Exemplars name sampled traces only, and nothing is sampled when spans are not recorded.
            trace_id = current_trace_id() if self.exemplars and self.record_spans else None
            key = (method, route, status)
            histogram = self._durations.get(key)
            if histogram is None:
                histogram = self._durations[key] = self.metrics.http_request_duration.labels(method, route, str(status))
            histogram.observe(elapsed, exemplar={"trace_id": trace_id} if trace_id else None)
            if scope["path"] not in QUIET_PATHS:
                self.access_log.write(
                    method=method,
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 3),
                    request_id=request_id,
                )
            REQUEST_CONTEXT.reset(token)
            if span_token is not None:  # last: the exemplar and the access log above read the current span
                otel_context.detach(span_token)

    def _start_span(self, scope: Scope) -> trace.Span | None:
        if self.tracer is None or scope["path"] in QUIET_PATHS:
            return None
        if not self.record_spans:
            return self._unrecorded_span(scope)
        method = scope["method"]
        return self.tracer.start_span(
            method,  # renamed to "METHOD /route/template" once routing has matched
            context=propagate.extract(scope, getter=_HEADERS),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"], "url.scheme": scope["scheme"]},
        )

    def _unrecorded_span(self, scope: Scope) -> trace.Span:
        parent = INVALID_SPAN_CONTEXT
        for name, _ in scope["headers"]:
            if name == b"traceparent":
                parent = trace.get_current_span(propagate.extract(scope, getter=_HEADERS)).get_span_context()
                break
        trace_id = parent.trace_id if parent.is_valid else self._ids.generate_trace_id()
        context = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=_UNSAMPLED,
            trace_state=parent.trace_state if parent.is_valid else None,
        )
        return NonRecordingSpan(context)

    @staticmethod
    def _end_span(span: trace.Span, method: str, route: str, status: int) -> None:
        if span.is_recording():
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        span.end()


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text: Any = value.decode("latin-1")
            return text if _REQUEST_ID.match(text) else None
    return None
