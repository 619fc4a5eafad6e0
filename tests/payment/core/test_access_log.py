"""The access log: one JSON line per request, written directly when logging is ours, through logging otherwise."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from payment.api import create_app
from payment.core.logs import (
    REQUEST_CONTEXT,
    AccessLog,
    JsonFormatter,
    JsonStreamHandler,
    RequestContext,
    configure_logging,
)
from tests.payment.conftest import make_settings

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
ROUTE = "/api/v1/webhooks/stripe"


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """Logging configured as `musdpay serve` does, into a string; the previous set-up restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("INFO", json_output=True, stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


@contextmanager
def alone() -> Iterator[None]:
    """Only configure_logging's handler on the root logger (pytest adds its capture handlers to each test)."""
    root = logging.getLogger()
    others = [handler for handler in root.handlers if not isinstance(handler, JsonStreamHandler)]
    for handler in others:
        root.removeHandler(handler)
    try:
        assert AccessLog()._direct_handler() is not None  # the access log takes its direct path
        yield
    finally:
        for handler in others:
            root.addHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def write_in_span(access: AccessLog) -> None:
    span = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(0)))
    with trace.use_span(span):
        access.write(method="POST", route=ROUTE, status=200, duration_ms=1.25, request_id="r-1")


def test_the_direct_line_is_what_the_json_formatter_would_write(logged: io.StringIO) -> None:
    # The middleware's request context, as JsonFormatter reads it for every line of a request.
    token = REQUEST_CONTEXT.set(RequestContext(request_id="r-1", scope={"route": SimpleNamespace(path=ROUTE)}))
    try:
        with alone():
            write_in_span(AccessLog())
        direct = lines(logged)[0]

        # The same line through logging, as the fallback path writes it.
        formatted = io.StringIO()
        handler = logging.StreamHandler(formatted)
        handler.setFormatter(JsonFormatter())
        access = AccessLog("musdpay.access.compared")
        access.logger.addHandler(handler)
        access.logger.propagate = False
        try:
            write_in_span(access)
        finally:
            access.logger.removeHandler(handler)
    finally:
        REQUEST_CONTEXT.reset(token)
    [through_logging] = lines(formatted)

    assert direct.keys() == through_logging.keys()
    assert direct["logger"] == "musdpay.access"
    assert through_logging["logger"] == "musdpay.access.compared"
    assert direct["message"] == through_logging["message"] == "POST /api/v1/webhooks/stripe 200"
    assert direct["trace_id"] == through_logging["trace_id"] == format(TRACE_ID, "032x")
    assert direct["span_id"] == format(SPAN_ID, "016x")
    assert (direct["method"], direct["status_code"], direct["duration_ms"]) == ("POST", 200, 1.25)
    assert (direct["request_id"], direct["route"]) == (through_logging["request_id"], through_logging["route"])
    assert (direct["request_id"], direct["route"]) == ("r-1", ROUTE)


def test_the_time_is_iso_8601_utc_with_milliseconds(logged: io.StringIO) -> None:
    with alone():
        write_in_span(AccessLog())
    [line] = lines(logged)
    moment = datetime.fromisoformat(line["time"])
    assert moment.utcoffset() is not None
    assert moment.utcoffset().total_seconds() == 0
    assert len(line["time"]) == len("2026-11-26T10:00:00.000+00:00")


def test_another_listener_gets_the_line_through_logging(logged: io.StringIO) -> None:
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    capture = Capture()
    logging.getLogger().addHandler(capture)
    try:
        write_in_span(AccessLog())
    finally:
        logging.getLogger().removeHandler(capture)
    assert [record.getMessage() for record in records] == ["POST /api/v1/webhooks/stripe 200"]
    assert records[0].__dict__["status_code"] == 200
    assert [line["message"] for line in lines(logged)] == ["POST /api/v1/webhooks/stripe 200"]  # written once


@pytest.mark.parametrize("silence", ["level", "disabled"])
def test_a_silenced_access_log_writes_nothing(logged: io.StringIO, silence: str) -> None:
    access = AccessLog()
    if silence == "level":
        access.logger.setLevel(logging.WARNING)
    else:
        access.logger.disabled = True
    try:
        with alone():
            write_in_span(access)
    finally:
        access.logger.setLevel(logging.NOTSET)
        access.logger.disabled = False
    assert lines(logged) == []


def test_each_request_writes_one_line_with_its_request_id(logged: io.StringIO) -> None:
    app = create_app(make_settings("sqlite://", auto_migrate=True))
    with alone(), TestClient(app) as client:
        response = client.post("/api/v1/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
        assert response.status_code == 400
        client.get("/healthz")  # probes are not logged
    access = [line for line in lines(logged) if line["logger"] == "musdpay.access"]
    assert len(access) == 1
    [line] = access
    assert line["request_id"] == response.headers["x-request-id"]
    assert (line["method"], line["route"], line["status_code"]) == ("POST", "/api/v1/webhooks/stripe", 400)
    assert len(line["trace_id"]) == 32
    assert len(line["span_id"]) == 16


def test_without_an_exporter_the_line_continues_the_dapps_trace(logged: io.StringIO) -> None:
    # No OTLP endpoint: spans are not recorded, yet the request's logs carry the dApp's trace id.
    app = create_app(make_settings("sqlite://", auto_migrate=True))
    traceparent = f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"
    with alone(), TestClient(app) as client:
        client.post("/api/v1/webhooks/stripe", content=b"{}", headers={"traceparent": traceparent})
        client.post("/api/v1/webhooks/stripe", content=b"{}")
    first, second = (line for line in lines(logged) if line["logger"] == "musdpay.access")
    assert first["trace_id"] == format(TRACE_ID, "032x")
    assert first["span_id"] != format(SPAN_ID, "016x")  # the request's own span, a child of the dApp's
    assert second["trace_id"] not in (first["trace_id"], "0" * 32)  # a new trace without a traceparent
