"""Traces, metrics and logs of real flows: the app served over HTTP, the emulator calling back with webhooks."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from payment.api import create_app
from payment.core.logs import JsonFormatter, redact
from payment.core.metrics import PaymentMetrics
from payment.core.telemetry import Telemetry, build_tracer_provider
from tests.payment.conftest import make_settings
from tests.support.asgi import serving
from tests.support.auth import bearer, wallet_token
from tests.support.services import free_port
from tests.support.stack import API_KEY, WEBHOOK_SECRET, Emulator, running_emulator
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"
SESSIONS = "/api/v1/onramp/sessions"
DAPP_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{DAPP_TRACE_ID}-00f067aa0ba902b7-01"


@dataclass
class Observed:
    url: str
    emulator: Emulator
    spans: InMemorySpanExporter
    logs: io.StringIO
    auth: dict[str, str]  # the buyer's wallet, signed in

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metrics(self, accept: str = "text/plain") -> str:
        return httpx.get(f"{self.url}/metrics", headers={"Accept": accept}).text

    def create(self, **headers: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}{SESSIONS}",
            json={"walletAddress": WALLET, "sourceAmount": "100.00"},
            headers={"Idempotency-Key": str(uuid.uuid4()), **self.auth, **headers},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def status(self, session_id: str) -> str:
        status: str = httpx.get(f"{self.url}{SESSIONS}/{session_id}", headers=self.auth).json()["status"]
        return status


@pytest.fixture
def observed(tmp_path: Path, database_url: str) -> Iterator[Observed]:
    port = free_port()
    spans = InMemorySpanExporter()
    telemetry = Telemetry(
        metrics=PaymentMetrics(),
        tracer_provider=build_tracer_provider(
            sample_ratio=1.0, service_name="musdpay-test", processors=[SimpleSpanProcessor(spans)]
        ),
        exporting=True,
    )
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = root.level
    root.setLevel(logging.INFO)
    with running_emulator(tmp_path, webhook_port=port) as emulator:
        settings = make_settings(
            database_url,
            auto_migrate=True,
            stripe_api_base=emulator.url,
            stripe_secret_key=API_KEY,
            stripe_webhook_secrets=[WEBHOOK_SECRET],
        )
        app = create_app(settings, telemetry=telemetry)
        try:
            with serving(app, port) as url:
                auth = bearer(wallet_token(settings, WALLET))
                yield Observed(url=url, emulator=emulator, spans=spans, logs=logs, auth=auth)
        finally:
            root.removeHandler(handler)
            root.setLevel(previous_level)


def fulfil(observed: Observed, session: dict[str, Any]) -> None:
    observed.emulator.advance(session["stripeSessionId"], "fulfillment_complete")
    wait_until(lambda: observed.status(session["id"]) == "fulfillment_complete", timeout=20, what="fulfillment")


def families(text: str) -> dict[str, list[Sample]]:
    return {family.name: list(family.samples) for family in text_string_to_metric_families(text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    matching = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(matching)


def test_the_trace_shows_request_stripe_call_database_writes_and_webhooks(observed: Observed) -> None:
    session = observed.create(traceparent=TRACEPARENT)
    fulfil(observed, session)
    spans = observed.finished()

    creation = [s for s in spans if s.context is not None and format(s.context.trace_id, "032x") == DAPP_TRACE_ID]
    names = {s.name for s in creation}
    assert f"POST {SESSIONS}" in names  # the server span, continuing the dApp's trace
    server = next(s for s in creation if s.name == f"POST {SESSIONS}")
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    stripe_call = next(s for s in creation if s.name.startswith("stripe POST"))
    assert stripe_call.attributes is not None
    assert stripe_call.attributes["stripe.operation"] == "create_onramp_session"
    # The outgoing HTTP call to Stripe is this client span (aiohttp under the SDK is not instrumented separately).
    assert stripe_call.kind is SpanKind.CLIENT
    assert stripe_call.attributes["http.request.method"] == "POST"
    assert stripe_call.attributes["http.response.status_code"] == 200
    assert str(stripe_call.attributes["stripe.request_id"]).startswith("req_")
    sql = [s for s in creation if s.attributes and s.attributes.get("db.system") in ("sqlite", "postgresql")]
    assert any("INSERT INTO onramp_sessions" in str(s.attributes.get("db.statement", "")) for s in sql if s.attributes)

    webhooks = [s for s in spans if s.name == "stripe.webhook.process"]
    assert len(webhooks) == 3
    for span in webhooks:
        assert span.attributes is not None
        assert span.attributes["stripe.event.type"] == "crypto.onramp_session_updated"
        assert str(span.attributes["stripe.event.id"]).startswith("evt_")
        assert span.attributes["musdpay.webhook.outcome"] in ("processed", "out_of_order")
        assert span.attributes["musdpay.session.id"] == session["id"]
        # Each webhook links back to the trace that created the session.
        assert any(format(link.context.trace_id, "032x") == DAPP_TRACE_ID for link in span.links)


def test_a_stripe_failure_marks_the_spans_as_errors(observed: Observed) -> None:
    observed.emulator.set_faults(error_rate=1.0)
    body = {"walletAddress": WALLET, "sourceAmount": "5"}
    response = httpx.post(f"{observed.url}{SESSIONS}", json=body, headers=observed.auth, timeout=60)
    assert response.status_code == 503
    spans = observed.finished()
    stripe_call = next(s for s in spans if s.name.startswith("stripe POST"))
    assert stripe_call.status.status_code is StatusCode.ERROR
    assert stripe_call.attributes is not None
    assert stripe_call.attributes["error.type"] == "server_error"
    text = families(observed.metrics())
    assert value(text["musdpay_stripe_errors"], "musdpay_stripe_errors_total", error_type="server_error") == 1
    failures = text["musdpay_onramp_session_create_failures"]
    assert value(failures, "musdpay_onramp_session_create_failures_total", reason="stripe-unavailable") == 1


def test_metrics_count_a_real_flow_in_every_family(observed: Observed) -> None:
    fulfilled = observed.create()
    observed.create()
    fulfil(observed, fulfilled)
    # A duplicate delivery of an event already processed, replayed through the emulator's signed event.
    event = observed.emulator.sdk().raw_request("get", "/v1/events", limit=1).data["data"][0]
    payload = json.dumps(event).encode()
    import stripe  # local: only this test signs a payload by hand

    header = stripe.WebhookSignature.generate_signature_header(payload.decode(), WEBHOOK_SECRET)
    assert (
        httpx.post(
            f"{observed.url}/api/v1/webhooks/stripe", content=payload, headers={"Stripe-Signature": header}
        ).json()["outcome"]
        == "duplicate"
    )
    assert (
        httpx.post(
            f"{observed.url}/api/v1/webhooks/stripe", content=payload, headers={"Stripe-Signature": "t=1,v1=00"}
        ).status_code
        == 400
    )

    m = families(observed.metrics())
    assert (
        value(m["musdpay_onramp_sessions_created"], "musdpay_onramp_sessions_created_total", destination_network="mezo")
        == 2
    )
    transitions = m["musdpay_onramp_status_transitions"]
    assert (
        value(transitions, "musdpay_onramp_status_transitions_total", from_status="creating", to_status="initialized")
        == 2
    )
    assert (
        value(
            transitions, "musdpay_onramp_status_transitions_total", to_status="fulfillment_complete", source="webhook"
        )
        == 1
    )
    assert (
        value(
            m["musdpay_onramp_payment_volume"],
            "musdpay_onramp_payment_volume_total",
            currency="usd",
            status="fulfillment_complete",
        )
        == 100.0
    )
    assert (
        value(m["musdpay_onramp_fulfillment_duration_seconds"], "musdpay_onramp_fulfillment_duration_seconds_count")
        == 1
    )
    events = m["musdpay_webhook_events"]
    assert (
        value(events, "musdpay_webhook_events_total", outcome="processed")
        + value(events, "musdpay_webhook_events_total", outcome="out_of_order")
        == 3
    )
    assert value(events, "musdpay_webhook_events_total", outcome="duplicate") == 1
    assert value(events, "musdpay_webhook_events_total", outcome="invalid_signature", type="unknown") == 1
    assert value(m["musdpay_webhook_lag_seconds"], "musdpay_webhook_lag_seconds_count") == 3
    assert (
        value(
            m["musdpay_stripe_request_duration_seconds"],
            "musdpay_stripe_request_duration_seconds_count",
            operation="create_onramp_session",
        )
        == 2
    )
    red = m["musdpay_http_request_duration_seconds"]
    assert (
        value(red, "musdpay_http_request_duration_seconds_count", method="POST", route=SESSIONS, status_code="201") == 2
    )
    assert (
        value(
            red,
            "musdpay_http_request_duration_seconds_count",
            route="/api/v1/onramp/sessions/{session_id}",
            status_code="200",
        )
        >= 1
    )
    assert value(m["musdpay_http_requests_in_flight"], "musdpay_http_requests_in_flight") == 1  # this scrape
    assert value(m["musdpay_db_pool_size"], "musdpay_db_pool_size") >= 1
    assert value(m["musdpay_db_pool_wait_seconds"], "musdpay_db_pool_wait_seconds_count") > 0
    for family in ("musdpay_delivery", "musdpay_delivery_duration_seconds", "process_cpu_seconds", "process_open_fds"):
        assert family in m, family


def test_latency_histograms_carry_trace_exemplars_in_openmetrics(observed: Observed) -> None:
    observed.create(traceparent=TRACEPARENT)
    text = observed.metrics(accept="application/openmetrics-text; version=1.0.0")
    exemplars = [
        s.exemplar.labels["trace_id"]
        for family in parse_openmetrics(text)
        if family.name == "musdpay_http_request_duration_seconds"
        for s in family.samples
        if s.exemplar is not None and s.labels.get("route") == SESSIONS
    ]
    assert DAPP_TRACE_ID in exemplars


IDENTIFIER = re.compile(r"0x[0-9a-fA-F]{40}|[0-9a-f]{8}-[0-9a-f]{4}-|cos_|evt_|[0-9a-f]{32}")


def test_labels_never_carry_wallets_ids_or_raw_paths(observed: Observed) -> None:
    session = observed.create()
    fulfil(observed, session)
    httpx.get(f"{observed.url}{SESSIONS}", params={"walletAddress": WALLET}, headers=observed.auth)
    httpx.get(f"{observed.url}/no/such/{uuid.uuid4()}")
    httpx.get(f"{observed.url}{SESSIONS}/{uuid.uuid4()}", headers=observed.auth)
    schema_paths = set(create_app(make_settings("sqlite://")).openapi()["paths"])
    routes = schema_paths | {"/metrics", "/problems/{slug}", "<unmatched>"}
    for family in text_string_to_metric_families(observed.metrics()):
        for sample in family.samples:
            for name, label in sample.labels.items():
                assert not IDENTIFIER.search(label), (sample.name, name, label)
                if name == "route":
                    assert label in routes, label


def test_logs_are_json_with_trace_ids_and_no_secrets(observed: Observed) -> None:
    session = observed.create(traceparent=TRACEPARENT)
    fulfil(observed, session)
    lines = [json.loads(line) for line in observed.logs.getvalue().splitlines() if line.strip()]
    access = [entry for entry in lines if entry.get("logger") == "musdpay.access"]
    creation = next(e for e in access if e["method"] == "POST" and e["route"] == SESSIONS)
    assert creation["trace_id"] == DAPP_TRACE_ID
    assert creation["status_code"] == 201
    assert re.fullmatch(r"[0-9a-f]{32}", creation["request_id"])
    assert {"time", "level", "message", "span_id"} <= creation.keys()
    text = observed.logs.getvalue()
    for secret in (API_KEY, WEBHOOK_SECRET, session["clientSecret"]):
        assert secret not in text


def test_the_logger_redacts_secrets_wherever_they_appear() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("musdpay.test.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning(
            "calling with sk_live_abc123DEF and whsec_zzz9 for cos_1Ab_secret_XyZ9 using %s",
            "Authorization: Bearer eyJhbGciOi.payload.sig",
            extra={"url": "postgresql://app:hunter2@db/x", "key": "mpk_live_abcdef"},
        )
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    for secret in (
        "sk_live_abc123DEF",
        "whsec_zzz9",
        "cos_1Ab_secret_XyZ9",
        "eyJhbGciOi",
        "hunter2",
        "mpk_live_abcdef",
    ):
        assert secret not in out
    assert json.loads(out)["level"] == "warning"
    assert redact("tx 0x" + "ab" * 32) == "tx 0x" + "ab" * 32  # transaction hashes are not secrets
