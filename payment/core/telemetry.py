"""Traces and metrics of one application instance, built once and injected where they are recorded.

Tracing uses the OpenTelemetry SDK. Spans are exported only when an OTLP endpoint is configured through the
standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, OTLP over HTTP), so
nothing leaves a development machine by default; trace ids still exist, for logs and exemplars. Sampling is
parent-based (a dApp's sampled `traceparent` is honoured) with `MUSDPAY_TRACE_SAMPLE_RATIO` for new traces.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

from payment.core.metrics import PaymentMetrics

__all__ = ["Telemetry", "build_tracer_provider", "current_trace_id", "current_traceparent", "link_current_span"]

TRACER_NAME = "musdpay.payment"
SQL_TRACER_NAME = "musdpay.sql"


def otlp_configured() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def build_tracer_provider(
    *, sample_ratio: float, service_name: str, processors: list[SpanProcessor] | None = None
) -> TracerProvider:
    """A provider that exports over OTLP when configured, or to the given processors (tests).

    With nowhere to send spans, nothing is recorded (ALWAYS_OFF): spans still carry trace ids, so logs stay
    correlated with the dApp's traceparent, but no CPU is spent building spans nobody will read.
    """
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service_name)})
    exporting = processors is not None or otlp_configured()
    sampler = ParentBased(TraceIdRatioBased(sample_ratio)) if exporting else ALWAYS_OFF
    provider = TracerProvider(resource=resource, sampler=sampler)
    for processor in processors or []:
        provider.add_span_processor(processor)
    if processors is None and exporting:
        # Imported only when used: the exporter pulls in protobuf.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter: SpanExporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


@dataclass
class Telemetry:
    """What the services record into: metrics always; spans through `tracer`."""

    metrics: PaymentMetrics = field(default_factory=lambda: PaymentMetrics(process_collectors=False))
    tracer_provider: TracerProvider | None = None
    # Whether spans go anywhere; without that, per-statement and per-call instrumentation is not installed.
    exporting: bool = False

    def __post_init__(self) -> None:
        # Built once: get_tracer() creates a new instrumentation scope each call.
        self.tracer: trace.Tracer = (
            trace.NoOpTracer() if self.tracer_provider is None else self.tracer_provider.get_tracer(TRACER_NAME)
        )
        # Spans of the statements run directly on the driver (payment/core/statements.py), only when exported,
        # as for the SQLAlchemy instrumentation of the engine.
        self.sql_tracer: trace.Tracer | None = (
            self.tracer_provider.get_tracer(SQL_TRACER_NAME)
            if self.tracer_provider is not None and self.exporting
            else None
        )

    def span(
        self,
        name: str,
        *,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Mapping[str, str | int | float | bool] | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> AbstractContextManager[trace.Span]:
        """A child span of the current one, made current for the block.

        When spans go nowhere, none is made: the block runs under the request's span (which carries the trace
        id the logs print), and what it records on it is dropped as on any unrecorded span. An unexported span
        still costs its ids, a sampling decision and a context switch, about 15 microseconds each.
        """
        if not self.exporting:
            return nullcontext(trace.get_current_span())
        return self.tracer.start_as_current_span(
            name,
            kind=kind,
            attributes=attributes,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


def current_trace_id() -> str | None:
    """The sampled trace id of the current span, for exemplars (an unsampled trace cannot be looked up)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        return format(context.trace_id, "032x")
    return None


def current_traceparent() -> str | None:
    """The W3C traceparent of the current sampled span, to keep with a record its later events can link to."""
    context = trace.get_current_span().get_span_context()
    if not (context.is_valid and context.trace_flags.sampled):
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"


def link_current_span(traceparent: str | None) -> None:
    """Link the current span to the span that wrote `traceparent` (e.g. a webhook to the session's creation)."""
    if not traceparent:
        return
    parts = traceparent.split("-")
    try:
        trace_id, span_id = int(parts[1], 16), int(parts[2], 16)
    except (IndexError, ValueError):
        return
    linked = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(1))
    if linked.is_valid:
        trace.get_current_span().add_link(linked, {"musdpay.link": "session.created"})
