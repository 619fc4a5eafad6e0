"""Stripe webhook ingestion: verify, record once, apply. Pure of HTTP.

Stripe delivers at least once, in any order, and retries until it gets a 2xx. So an event is recorded and
applied in one transaction keyed by its id: a duplicate finds the id taken and is acknowledged without effect,
and a crash before the commit leaves nothing, so Stripe's retry does the whole work again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

import stripe
from opentelemetry import trace
from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from payment.auth import audit
from payment.core.config import Settings
from payment.core.db import core_transaction
from payment.core.faults import crash_point
from payment.core.metrics import KNOWN_EVENT_TYPES, OTHER_EVENT_TYPE, LabelSets, event_type_label
from payment.core.problems import FieldError, NotFound, Problem, UpstreamProblem, ValidationProblem
from payment.core.statements import DirectConnection, Statement, direct_on, direct_transaction
from payment.core.telemetry import Telemetry, link_current_span
from payment.onramp import store
from payment.onramp.service import (
    Applied,
    TransitionSource,
    apply_snapshot,
    parse_snapshot,
    record_applied,
    write_snapshot,
)
from payment.webhooks.models import WebhookEvent

__all__ = [
    "UNVERIFIED_TYPE",
    "Failure",
    "InvalidSignature",
    "Outcome",
    "ingest_event",
    "ingest_recovered_event",
    "metric_labels",
    "replay_event",
    "verify_signature",
]

log = logging.getLogger(__name__)

EVENTS = cast(Table, WebhookEvent.__table__)
_INSERT_EVENT = Statement(insert(EVENTS))
_EVENT_EXISTS = Statement(select(EVENTS.c.id).where(EVENTS.c.id == bindparam("event_id")))

SESSION_UPDATED = "crypto.onramp_session_updated"
# webhook_events.origin: delivered to our endpoint, or found by reconciliation's List Events.
ORIGIN_WEBHOOK = "webhook"
ORIGIN_RECONCILE = "reconcile"


class Outcome(StrEnum):
    processed = "processed"  # applied to a session
    out_of_order = "out_of_order"  # older than what the session already shows: recorded, not applied
    unknown_session = "unknown_session"  # no session of ours matches
    ignored = "ignored"  # an event type we do not act on
    duplicate = "duplicate"  # seen before (never stored: the first record stands)


class Failure(StrEnum):
    """The other outcomes of `musdpay_webhook_events_total`: deliveries that record nothing."""

    invalid_signature = "invalid_signature"  # refused before reading the payload (type UNVERIFIED_TYPE)
    invalid_payload = "invalid_payload"  # signed, but not an event (type UNVERIFIED_TYPE)
    failed = "failed"  # an error while recording or applying it: Stripe will retry


# The `type` label of a delivery whose event type was not read (the payload is untrusted or not an event).
UNVERIFIED_TYPE = "unknown"


def metric_labels() -> LabelSets:
    """The (type, outcome) pairs of `musdpay_webhook_events_total`, for `PaymentMetrics.initialise`."""
    types = (*sorted(KNOWN_EVENT_TYPES), OTHER_EVENT_TYPE)
    unread = [(UNVERIFIED_TYPE, Failure.invalid_signature.value), (UNVERIFIED_TYPE, Failure.invalid_payload.value)]
    outcomes = (*(outcome.value for outcome in Outcome), Failure.failed.value)
    return {"webhook_events": unread + [(kind, outcome) for kind in types for outcome in outcomes]}


class InvalidSignature(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(status=400, slug="invalid-signature", detail=detail, title="Invalid webhook signature")


@dataclass(frozen=True)
class IngestResult:
    event_id: str
    event_type: str
    outcome: Outcome
    session_id: str | None
    delivery_enqueued: bool = False  # this event made the session's MUSD delivery due


def verify_signature(payload: bytes, header: str | None, secrets: Sequence[str], tolerance: int) -> None:
    """Accept the payload if any configured endpoint secret signed it recently (several during rotation)."""
    if not secrets:
        raise UpstreamProblem(503, "stripe-not-configured", "No webhook signing secret is configured.")
    if not header:
        raise InvalidSignature("The Stripe-Signature header is missing.")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSignature("The payload is not UTF-8.") from exc
    stale = False
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance)
            return
        except stripe.SignatureVerificationError as exc:
            stale = stale or "tolerance" in str(exc)
    if stale:
        raise InvalidSignature("The signature timestamp is outside the tolerance window.")
    raise InvalidSignature("No valid signature for this payload.")


def _parse_event(payload: bytes) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise ValidationProblem([FieldError("body", "is not valid JSON", "json_invalid")]) from exc
    errors: list[FieldError] = []
    if not isinstance(event, dict):
        raise ValidationProblem([FieldError("body", "must be a Stripe event object", "type_error")])
    if not isinstance(event.get("id"), str) or not event["id"]:
        errors.append(FieldError("body.id", "must be the event id", "missing"))
    if not isinstance(event.get("type"), str):
        errors.append(FieldError("body.type", "must be the event type", "missing"))
    if not isinstance(event.get("created"), int) or isinstance(event.get("created"), bool):
        errors.append(FieldError("body.created", "must be a unix timestamp", "missing"))
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        errors.append(FieldError("body.data.object", "must be an object", "missing"))
    if errors:
        raise ValidationProblem(errors)
    return event


def ingest_event(
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    telemetry: Telemetry,
    payload: bytes,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> IngestResult:
    """Record and apply one verified event; call only after verify_signature."""
    metrics = telemetry.metrics
    with telemetry.span("stripe.webhook.process") as span:
        try:
            event = _parse_event(payload)
        except Problem:
            metrics.webhook_events.labels(UNVERIFIED_TYPE, Failure.invalid_payload.value).inc()
            raise
        event_id: str = event["id"]
        event_type: str = event["type"]
        span.set_attributes({"stripe.event.id": event_id, "stripe.event.type": event_type})
        try:
            result, applied = _record_and_apply(factory, settings, telemetry, event, payload, clock())
        except Exception:
            metrics.webhook_events.labels(event_type_label(event_type), Failure.failed.value).inc()
            raise
        span.set_attribute("musdpay.webhook.outcome", result.outcome.value)
        if result.session_id:
            span.set_attribute("musdpay.session.id", result.session_id)
    metrics.webhook_events.labels(event_type_label(event_type), result.outcome.value).inc()
    if result.outcome is not Outcome.duplicate:
        metrics.webhook_lag.observe(max(clock().timestamp() - event["created"], 0.0))
    record_applied(telemetry, applied)
    return result


def ingest_recovered_event(
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    telemetry: Telemetry,
    event: dict[str, Any],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> IngestResult:
    """Record and apply an event that reconciliation listed at Stripe, exactly as a delivery of it would be.

    Stored in webhook_events under its id (origin `reconcile`), so a later delivery of it is a duplicate and an
    earlier one makes this a duplicate; its status changes have source `reconcile`. Not counted in
    `musdpay_webhook_events_total`: reconciliation counts what it recovers.
    """
    payload = json.dumps(event, separators=(",", ":")).encode()
    parsed = _parse_event(payload)
    result, applied = _record_and_apply(
        factory, settings, telemetry, parsed, payload, clock(),
        source=TransitionSource.reconcile, origin=ORIGIN_RECONCILE,
    )  # fmt: skip
    record_applied(telemetry, applied)
    return result


def _record_and_apply(
    factory: sessionmaker[Session],
    settings: Settings,
    telemetry: Telemetry,
    event: dict[str, Any],
    payload: bytes,
    now: datetime,
    *,
    source: TransitionSource = TransitionSource.webhook,
    origin: str = ORIGIN_WEBHOOK,
) -> tuple[IngestResult, Applied | None]:
    event_id: str = event["id"]
    event_type: str = event["type"]
    obj: dict[str, Any] = event["data"]["object"]
    tracer: trace.Tracer | None = telemetry.sql_tracer
    try:
        with direct_transaction(factory, tracer) as conn:
            outcome, session_id, applied, enqueued = _apply(conn, settings, event, obj, now, source=source)
            # Recorded last: if the id is taken (a duplicate delivery), the unique key fails the insert and the
            # whole transaction, the session's changes included, rolls back.
            conn.execute(
                _INSERT_EVENT,
                {
                    "id": event_id,
                    "type": event_type[:128],
                    "livemode": bool(event.get("livemode", False)),
                    "stripe_created": event["created"],
                    "received_at": now,
                    "processed_at": now,
                    "outcome": outcome.value,
                    "session_id": session_id,
                    "stripe_object_id": str(obj.get("id"))[:255] if obj.get("id") else None,
                    "payload": payload.decode("utf-8"),
                    "origin": origin,
                },
            )
            crash_point(settings, "webhook_before_commit")
    except IntegrityError:
        with direct_transaction(factory, tracer, write=False) as conn:
            if conn.first(_EVENT_EXISTS, {"event_id": event_id}) is None:
                raise
        return IngestResult(event_id, event_type, Outcome.duplicate, None), None
    return IngestResult(event_id, event_type, outcome, session_id, enqueued), applied


def _apply(
    conn: DirectConnection,
    settings: Settings,
    event: dict[str, Any],
    obj: dict[str, Any],
    now: datetime,
    *,
    source: TransitionSource = TransitionSource.webhook,
) -> tuple[Outcome, str | None, Applied | None, bool]:
    if event["type"] != SESSION_UPDATED:
        return Outcome.ignored, None, None, False
    try:
        snapshot = parse_snapshot(obj)
    except Problem:
        log.warning("webhook %s carries an object that is not an onramp session", event["id"])
        return Outcome.ignored, None, None, False
    row = store.load_for_snapshot(conn, snapshot.stripe_session_id, snapshot.our_session_id)
    if row is None:
        return Outcome.unknown_session, None, None, False
    link_current_span(row.creation_traceparent)
    changes, applied = apply_snapshot(row, snapshot, position=(event["created"], event["id"]), source=source, now=now)
    enqueued = write_snapshot(conn, row, changes, applied, event["id"], settings=settings)
    return (Outcome.processed if applied else Outcome.out_of_order), row.id, applied, enqueued


def replay_event(
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    telemetry: Telemetry,
    event_id: str,
    actor: audit.Actor,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> IngestResult:
    """Apply a recorded event again, as an operator asks (e.g. after fixing the data it referred to).

    Safe at any time: a snapshot only moves a session forward, so replaying an old event changes nothing. The
    event's original record stays as it was; the replay and its outcome go to the audit log, in the same
    transaction as its effect.
    """
    now = clock()
    with core_transaction(factory) as conn:
        payload = conn.execute(select(EVENTS.c.payload).where(EVENTS.c.id == event_id)).scalar_one_or_none()
        if payload is None:
            raise NotFound(f"No recorded webhook event {event_id}.")
        event = json.loads(payload)
        direct = direct_on(conn, telemetry.sql_tracer)
        outcome, session_id, applied, enqueued = _apply(direct, settings, event, event["data"]["object"], now)
        audit.record(
            conn,
            actor=actor,
            action="webhook.replay",
            target=event_id,
            detail={"outcome": outcome.value, "session_id": session_id},
            at=now,
        )
    record_applied(telemetry, applied)
    return IngestResult(event_id, event["type"], outcome, session_id, enqueued)
