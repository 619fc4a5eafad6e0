"""Every counter series a dashboard, SLO or alert reads exists at 0 from the start (docs/metrics.md, "Series
known in advance start at 0"), and the code cannot emit a label value outside the initialised sets."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from payment.api import known_labels
from payment.chain.errors import RpcErrorKind
from payment.core.config import Settings
from payment.core.metrics import KNOWN_EVENT_TYPES, PaymentMetrics, event_type_label, initialise_families
from payment.core.problems import PROBLEM_TYPES, Problem
from payment.core.telemetry import Telemetry
from payment.delivery.status import DeliveryStatus
from payment.onramp.service import (
    CREATE_FAILURE_REASONS,
    Snapshot,
    TransitionSource,
    apply_snapshot,
    create_failure_reason,
    record_applied,
)
from payment.onramp.status import SessionStatus
from payment.onramp.store import SessionRecord
from payment.onramp.stripe_gateway import StripeErrorType
from payment.webhooks.service import Outcome

Series = set[tuple[str, tuple[tuple[str, str], ...]]]

SETTINGS = Settings(source_currencies="usd,eur", rpc_providers="spectrum=http://127.0.0.1:1,public=http://127.0.0.1:2")
PROVIDERS = ["spectrum", "public"]


def initialised() -> PaymentMetrics:
    metrics = PaymentMetrics(CollectorRegistry(), process_collectors=False)
    metrics.initialise(*known_labels(SETTINGS, PROVIDERS))
    return metrics


def counter_series(metrics: PaymentMetrics) -> Series:
    """(family, labels) of every counter series, and of every labelled histogram's `_count`."""
    found: Series = set()
    for family in metrics.registry.collect():
        for sample in family.samples:
            counted = family.type == "counter" and sample.name.endswith("_total")
            if counted or (family.type == "histogram" and sample.name.endswith("_count") and sample.labels):
                found.add((sample.name, tuple(sorted(sample.labels.items()))))
    return found


def labelled(series: Series, name: str) -> set[tuple[str, ...]]:
    return {tuple(value for _, value in labels) for sample, labels in series if sample == name}


def test_every_known_series_is_exported_at_zero() -> None:
    text = generate_latest(initialised().registry).decode()
    for line in (
        'musdpay_onramp_payment_volume_total{currency="usd",status="fulfillment_complete"} 0.0',
        'musdpay_onramp_payment_volume_total{currency="eur",status="rejected"} 0.0',
        'musdpay_onramp_fees_total{currency="usd",fee="transaction"} 0.0',
        'musdpay_onramp_fees_total{currency="eur",fee="network"} 0.0',
        'musdpay_onramp_status_transitions_total{from_status="creating",source="api",to_status="initialized"} 0.0',
        'musdpay_onramp_status_transitions_total{from_status="fulfillment_processing",source="webhook",'
        'to_status="fulfillment_complete"} 0.0',
        'musdpay_onramp_sessions_created_total{destination_currency="musd",destination_network="mezo",'
        'source_currency="eur"} 0.0',
        'musdpay_onramp_session_create_failures_total{reason="stripe-unavailable"} 0.0',
        'musdpay_webhook_events_total{outcome="processed",type="crypto.onramp_session_updated"} 0.0',
        'musdpay_webhook_events_total{outcome="invalid_signature",type="unknown"} 0.0',
        'musdpay_webhook_events_total{outcome="ignored",type="other"} 0.0',
        'musdpay_stripe_errors_total{error_type="rejected",operation="create_onramp_session"} 0.0',
        'musdpay_stripe_request_duration_seconds_count{operation="create_onramp_session"} 0.0',
        'musdpay_delivery_total{mode="onramp",outcome="verified"} 0.0',
        'musdpay_delivery_duration_seconds_count{mode="onramp"} 0.0',
        'musdpay_rpc_errors_total{kind="http_5xx",provider="spectrum"} 0.0',
        'musdpay_rpc_errors_total{kind="no_provider",provider="none"} 0.0',
        'musdpay_rpc_failovers_total{from_provider="spectrum",to_provider="public"} 0.0',
    ):
        assert line in text, line


def test_the_sets_are_exactly_the_known_values() -> None:
    series = counter_series(initialised())
    sources = {s.value for s in TransitionSource}
    assert sources == {"api", "recovery", "webhook", "reconcile"}
    forward = [
        ("creating", "initialized"), ("creating", "requires_payment"), ("creating", "fulfillment_processing"),
        ("creating", "fulfillment_complete"), ("creating", "rejected"),
        ("initialized", "requires_payment"), ("initialized", "fulfillment_processing"),
        ("initialized", "fulfillment_complete"), ("initialized", "rejected"),
        ("requires_payment", "fulfillment_processing"), ("requires_payment", "fulfillment_complete"),
        ("requires_payment", "rejected"),
        ("fulfillment_processing", "fulfillment_complete"), ("fulfillment_processing", "rejected"),
    ]  # fmt: skip
    # labels are sorted by name: from_status, source, to_status
    assert labelled(series, "musdpay_onramp_status_transitions_total") == {
        (before, source, after) for before, after in forward for source in sources
    }
    finals = ("fulfillment_complete", "rejected")
    assert labelled(series, "musdpay_onramp_payment_volume_total") == set(itertools.product(("usd", "eur"), finals))
    fees = ("network", "transaction")
    assert labelled(series, "musdpay_onramp_fees_total") == set(itertools.product(("usd", "eur"), fees))
    assert labelled(series, "musdpay_onramp_sessions_created_total") == {
        ("musd", "mezo", "usd"),
        ("musd", "mezo", "eur"),
    }
    outcomes = {"processed", "out_of_order", "unknown_session", "ignored", "duplicate", "failed"}
    assert labelled(series, "musdpay_webhook_events_total") == {
        ("invalid_signature", "unknown"),
        ("invalid_payload", "unknown"),
        *((outcome, kind) for outcome in outcomes for kind in ("crypto.onramp_session_updated", "other")),
    }
    assert {error for error, _ in labelled(series, "musdpay_stripe_errors_total")} == {
        "timeout", "connection", "rate_limited", "server_error", "authentication", "rejected", "onramp_unavailable",
        "invalid_request", "invalid_response",
    }  # fmt: skip
    assert labelled(series, "musdpay_delivery_total") == {
        ("onramp", outcome) for outcome in ("verified", "mismatch", "failed", "not_found", "held")
    }
    provider_kinds = {kind.value for kind in RpcErrorKind} - {"no_provider"}
    assert labelled(series, "musdpay_rpc_errors_total") == {
        *((kind, provider) for kind in provider_kinds for provider in PROVIDERS),
        ("chain_id_mismatch", "none"),
        ("no_provider", "none"),
    }
    assert labelled(series, "musdpay_rpc_failovers_total") == {("spectrum", "public"), ("public", "spectrum")}
    # Nothing else: the request histogram (status codes are not known in advance), the per-call RPC histogram
    # and the rate limits stay empty until their first event.
    assert not labelled(series, "musdpay_http_request_duration_seconds_count")
    assert not labelled(series, "musdpay_rpc_request_duration_seconds_count")
    assert not labelled(series, "musdpay_rate_limited_total")


def test_treasury_mode_initialises_its_own_mode() -> None:
    metrics = PaymentMetrics(CollectorRegistry(), process_collectors=False)
    metrics.initialise(*known_labels(Settings(delivery_mode="treasury"), ["local"]))
    assert {mode for mode, _ in labelled(counter_series(metrics), "musdpay_delivery_total")} == {"treasury"}


def test_a_gauge_or_an_unknown_family_is_refused() -> None:
    metrics = PaymentMetrics(CollectorRegistry(), process_collectors=False)
    with pytest.raises(TypeError):
        initialise_families(metrics, [{"rpc_provider_selected": [("spectrum",)]}])
    with pytest.raises(AttributeError):
        initialise_families(metrics, [{"no_such_family": [("x",)]}])


# --- the code cannot emit a value outside the sets ------------------------------------------------------------


def _row(status: SessionStatus) -> SessionRecord:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    return SessionRecord(
        id="s", stripe_session_id="cos_1", client_secret=None, status=status.value, livemode=False,
        wallet_address="0x0", source_amount=Decimal("10.00"), source_currency="usd", destination_currency="musd",
        destination_network="mezo", customer_ip_address=None, transaction_id=None, destination_amount=None,
        network_fee_amount=None, transaction_fee_amount=None, idempotency_key=None, request_fingerprint="0",
        creation_started_at=None, last_event_id="evt_0", last_event_created=100, creation_traceparent=None,
        created_at=at, updated_at=at,
    )  # fmt: skip


def _snapshot(status: SessionStatus) -> Snapshot:
    return Snapshot(
        stripe_session_id="cos_1", status=status, client_secret=None, livemode=False, our_session_id="s",
        transaction_id="0xabc", destination_amount=Decimal("9"), network_fee_amount=Decimal("0.01"),
        transaction_fee_amount=Decimal("0.50"),
    )  # fmt: skip


def test_no_status_change_creates_a_series() -> None:
    """Every (status, snapshot status, source) the forward-only machine accepts, recorded as the services record
    it: transitions, volume, fees and the fulfillment histogram add no series to the initialised ones."""
    metrics = initialised()
    telemetry = Telemetry(metrics=metrics)
    before = counter_series(metrics)
    applied_any = 0
    for current, candidate, source in itertools.product(
        SessionStatus, [s for s in SessionStatus if s is not SessionStatus.creating], TransitionSource
    ):
        for position in ((50, "evt_a"), (200, "evt_z")):  # older and newer than the row's last event
            _, applied = apply_snapshot(
                _row(current), _snapshot(candidate), position=position, source=source, now=datetime.now(UTC)
            )
            applied_any += applied is not None and applied.from_status is not applied.to_status
            record_applied(telemetry, applied)
    assert applied_any > 0
    assert counter_series(metrics) == before


def test_fees_are_counted_once_at_fulfillment() -> None:
    metrics = initialised()
    telemetry = Telemetry(metrics=metrics)
    for current, candidate in (
        (SessionStatus.fulfillment_processing, SessionStatus.fulfillment_complete),
        (SessionStatus.fulfillment_processing, SessionStatus.rejected),
    ):
        _, applied = apply_snapshot(
            _row(current), _snapshot(candidate), position=(200, "evt_z"), source=TransitionSource.webhook,
            now=datetime.now(UTC),
        )  # fmt: skip
        record_applied(telemetry, applied)
    value = metrics.registry.get_sample_value
    assert value("musdpay_onramp_fees_total", {"currency": "usd", "fee": "transaction"}) == 0.5
    assert value("musdpay_onramp_fees_total", {"currency": "usd", "fee": "network"}) == 0.01


def test_a_fee_stripe_did_not_report_adds_nothing() -> None:
    metrics = initialised()
    row = _row(SessionStatus.fulfillment_processing)
    snapshot = Snapshot(
        stripe_session_id="cos_1", status=SessionStatus.fulfillment_complete, client_secret=None, livemode=False,
        our_session_id="s", transaction_id=None, destination_amount=None, network_fee_amount=None,
        transaction_fee_amount=Decimal("1.25"),
    )  # fmt: skip
    _, applied = apply_snapshot(row, snapshot, position=(200, "e"), source=TransitionSource.webhook, now=row.created_at)
    assert applied is not None
    assert applied.fees == {"transaction": Decimal("1.25")}
    record_applied(Telemetry(metrics=metrics), applied)
    value = metrics.registry.get_sample_value
    assert value("musdpay_onramp_fees_total", {"currency": "usd", "fee": "transaction"}) == 1.25
    assert value("musdpay_onramp_fees_total", {"currency": "usd", "fee": "network"}) == 0.0


def test_every_failure_reason_is_in_the_set() -> None:
    reasons = labelled(counter_series(initialised()), "musdpay_onramp_session_create_failures_total")
    assert {(slug,) for slug in CREATE_FAILURE_REASONS} == reasons
    assert set(CREATE_FAILURE_REASONS) - {"other"} <= set(PROBLEM_TYPES)  # each names a real problem type
    for slug in PROBLEM_TYPES:
        assert (create_failure_reason(Problem(status=400, slug=slug, detail="x")),) in reasons


def test_every_webhook_label_the_service_can_emit_is_in_the_set() -> None:
    series = labelled(counter_series(initialised()), "musdpay_webhook_events_total")
    for event_type in (*KNOWN_EVENT_TYPES, "charge.succeeded", "crypto.onramp_session.created"):
        for outcome in (*(o.value for o in Outcome), "failed"):
            assert (outcome, event_type_label(event_type)) in series


def test_every_recorded_delivery_outcome_and_stripe_error_is_in_the_set() -> None:
    series = counter_series(initialised())
    deliveries = {outcome for _, outcome in labelled(series, "musdpay_delivery_total")}
    assert deliveries == {s.value for s in DeliveryStatus} - {"pending"}
    assert {error for error, _ in labelled(series, "musdpay_stripe_errors_total")} == {t.value for t in StripeErrorType}
