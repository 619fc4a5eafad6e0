"""One reconciliation pass: bring sessions to Stripe's truth when webhooks were lost or late. Pure of HTTP.

A pass, bounded by the settings:

1. **events**: lists `crypto.onramp_session_updated` events whose delivery failed at Stripe
   (`delivery_success=false`), created since the cursor of the last pass, page by page; each one we have not
   recorded goes through the webhook path (`webhooks.service.ingest_recovered_event`: recorded once under its
   id, applied in order, status history source `reconcile`). The cursor then becomes the pass's start less
   the lookback (Stripe marks an event failed only once its retries end, so an event listed as failed later
   may be older than the last pass), kept in `reconcile_state` so it survives restarts, and never older than
   Stripe's 30 days of events. If the pages ran out before the list did, the pass is `truncated` and the
   cursor stays, so the next pass sees those events again.
2. **sessions**: retrieves every session that is not final and has not changed for `stale` seconds (most
   recently changed first, at most `max_sessions`) and applies the snapshot through the same ordered path
   (`onramp.service.apply_snapshot`) at the session's current position: it moves a session forward only, so
   it never undoes a webhook, and a later event still applies.

Everything is idempotent and safe beside webhooks and other passes: events are keyed by id, sessions are
changed under their row lock and only forward. A Stripe failure stops the pass (`StripeUnavailable`): what was
done stays done, and the caller backs off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from payment.core.config import Settings
from payment.core.metrics import LabelSets
from payment.core.statements import direct_transaction
from payment.core.telemetry import Telemetry
from payment.onramp import store
from payment.onramp.service import (
    Applied,
    TransitionSource,
    apply_snapshot,
    parse_snapshot,
    record_applied,
    write_snapshot,
)
from payment.onramp.status import FINAL_STATUSES, SessionStatus
from payment.reconcile.models import ReconcileState
from payment.reconcile.stripe import ReconcileStripe, SessionMissing
from payment.webhooks.models import WebhookEvent
from payment.webhooks.service import SESSION_UPDATED, Outcome, ingest_recovered_event

__all__ = ["STATE_NAME", "PassReport", "RunOutcome", "metric_labels", "run_pass"]

log = logging.getLogger(__name__)

STATE_NAME = "stripe"
PAGE_SIZE = 100
EVENT_RETENTION = timedelta(days=30)  # Stripe keeps events this long: listing further back finds nothing
Clock = Callable[[], datetime]


class RunOutcome(StrEnum):
    """The `outcome` label of `musdpay_reconcile_runs_total`."""

    success = "success"
    truncated = "truncated"  # finished, but more failed events were listed than a pass reads
    skipped = "skipped"  # another instance holds the lease
    stripe_error = "stripe_error"
    rate_limited = "rate_limited"
    database_error = "database_error"
    failed = "failed"  # a bug: logged with its traceback


def metric_labels() -> LabelSets:
    return {"reconcile_runs": [(outcome.value,) for outcome in RunOutcome]}


@dataclass
class PassReport:
    outcome: RunOutcome = RunOutcome.success
    sessions_checked: int = 0
    sessions_corrected: int = 0
    events_listed: int = 0
    events_recovered: int = 0
    retry_after: float | None = None  # Stripe's Retry-After, when it sent one
    detail: str | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def run_pass(
    *,
    factory: sessionmaker[Session],
    stripe: ReconcileStripe,
    settings: Settings,
    telemetry: Telemetry,
    clock: Clock = _utcnow,
) -> PassReport:
    """One pass (see the module). Raises StripeUnavailable, and SQLAlchemy's errors for the database; what it
    corrected before the error is committed and counted."""
    metrics = telemetry.metrics
    report = PassReport()
    started = clock()
    began = time.perf_counter()
    with telemetry.span("reconcile.pass") as span:
        try:
            complete = _recover_events(factory, stripe, settings, telemetry, report, started)
            _check_sessions(factory, stripe, settings, telemetry, report, clock)
            if not complete:
                report.outcome = RunOutcome.truncated
            _save_state(factory, started, advance_cursor=complete, settings=settings)
        finally:
            metrics.reconcile_duration.observe(time.perf_counter() - began)
            span.set_attributes(
                {
                    "musdpay.reconcile.sessions_checked": report.sessions_checked,
                    "musdpay.reconcile.sessions_corrected": report.sessions_corrected,
                    "musdpay.reconcile.events_recovered": report.events_recovered,
                }
            )
    metrics.reconcile_last_success.set(started.timestamp())
    return report


# --- events ------------------------------------------------------------------------------------------------


def load_state(factory: sessionmaker[Session]) -> ReconcileState | None:
    with factory() as db:
        state = db.get(ReconcileState, STATE_NAME)
        if state is not None:
            db.expunge(state)
        return state


def _cursor(factory: sessionmaker[Session], settings: Settings, now: datetime) -> int:
    state = load_state(factory)
    oldest = int((now - EVENT_RETENTION).timestamp())
    if state is None:  # the first pass: as far back as an event can still turn failed
        return max(oldest, int(now.timestamp() - settings.reconcile_events_lookback_seconds))
    return max(oldest, state.events_cursor)


def _save_state(factory: sessionmaker[Session], started: datetime, *, advance_cursor: bool, settings: Settings) -> None:
    cursor = int(started.timestamp() - settings.reconcile_events_lookback_seconds)
    for _attempt in range(2):
        try:
            with factory.begin() as db:
                state = db.get(ReconcileState, STATE_NAME, with_for_update=True)
                if state is None:
                    db.add(
                        ReconcileState(
                            name=STATE_NAME,
                            events_cursor=cursor if advance_cursor else int((started - EVENT_RETENTION).timestamp()),
                            last_success_at=started,
                            updated_at=started,
                        )
                    )
                else:
                    if advance_cursor:  # never backwards: a concurrent pass that started later may have saved
                        state.events_cursor = max(state.events_cursor, cursor)
                    if state.last_success_at is None or state.last_success_at < started:
                        state.last_success_at = started
                    state.updated_at = started
            return
        except IntegrityError:  # another pass inserted the row first: update it
            continue


def _known(factory: sessionmaker[Session], event_ids: list[str]) -> set[str]:
    if not event_ids:
        return set()
    with factory() as db:
        return set(db.scalars(select(WebhookEvent.id).where(WebhookEvent.id.in_(event_ids))))


def _recover_events(
    factory: sessionmaker[Session],
    stripe: ReconcileStripe,
    settings: Settings,
    telemetry: Telemetry,
    report: PassReport,
    now: datetime,
) -> bool:
    """Ingest the failed-delivery events we lack; True if the whole list was read."""
    params: dict[str, Any] = {
        "type": SESSION_UPDATED,
        "delivery_success": False,
        "created": {"gte": _cursor(factory, settings, now)},
        "limit": PAGE_SIZE,
    }
    listed: list[dict[str, Any]] = []
    complete = False
    for _page in range(settings.reconcile_max_event_pages):
        page = stripe.list_events(params)
        events = [e for e in page["data"] if isinstance(e, dict) and isinstance(e.get("id"), str)]
        listed.extend(events)
        if not page.get("has_more") or not events:
            complete = True
            break
        params["starting_after"] = events[-1]["id"]
    report.events_listed = len(listed)
    known = _known(factory, [e["id"] for e in listed])
    # Oldest first (Stripe lists newest first), so the status history shows each step as a webhook would.
    for event in reversed(listed):
        if event["id"] in known:
            continue
        result = ingest_recovered_event(factory=factory, settings=settings, telemetry=telemetry, event=event)
        if result.outcome is not Outcome.duplicate:  # a webhook may have brought it meanwhile
            report.events_recovered += 1
            telemetry.metrics.reconcile_events_recovered.inc()
            log.warning("reconcile: recovered event %s (%s)", result.event_id, result.outcome.value)
    return complete


# --- sessions ----------------------------------------------------------------------------------------------

_c = store.SESSIONS.c
_NOT_FINAL = [status.value for status in SessionStatus if status not in FINAL_STATUSES and status.value != "creating"]


def _stale_sessions(factory: sessionmaker[Session], cutoff: datetime, limit: int) -> list[tuple[str, str]]:
    query = (
        select(_c.id, _c.stripe_session_id)
        .where(_c.status.in_(_NOT_FINAL), _c.stripe_session_id.is_not(None), _c.updated_at < cutoff)
        .order_by(_c.updated_at.desc(), _c.id)
        .limit(limit)
    )
    with factory() as db:
        return [(row.id, row.stripe_session_id) for row in db.execute(query)]


def _check_sessions(
    factory: sessionmaker[Session],
    stripe: ReconcileStripe,
    settings: Settings,
    telemetry: Telemetry,
    report: PassReport,
    clock: Clock,
) -> None:
    cutoff = clock() - timedelta(seconds=settings.reconcile_stale_seconds)
    for session_id, stripe_id in _stale_sessions(factory, cutoff, settings.reconcile_max_sessions):
        try:
            obj = stripe.retrieve_session(stripe_id)
        except SessionMissing:
            log.warning("reconcile: Stripe does not know session %s (%s)", session_id, stripe_id)
            continue
        report.sessions_checked += 1
        telemetry.metrics.reconcile_sessions_checked.inc()
        applied = _apply_retrieved(factory, settings, telemetry, stripe_id, obj, clock())
        if applied is not None and applied.from_status is not applied.to_status:
            report.sessions_corrected += 1
            telemetry.metrics.reconcile_sessions_corrected.inc()
            log.warning(
                "reconcile: session %s corrected %s -> %s",
                applied.session_id,
                applied.from_status.value,
                applied.to_status.value,
            )


def _apply_retrieved(
    factory: sessionmaker[Session],
    settings: Settings,
    telemetry: Telemetry,
    stripe_id: str,
    obj: dict[str, Any],
    now: datetime,
) -> Applied | None:
    """Apply a retrieved session as a webhook's snapshot is applied, at the position the row already holds: it
    wins only with a higher status (or fills missing details), and a later event still applies after it."""
    snapshot = parse_snapshot(obj)
    with direct_transaction(factory, telemetry.sql_tracer) as conn:
        row = store.load_for_snapshot(conn, stripe_id, None)
        if row is None:
            return None
        changes, applied = apply_snapshot(
            row,
            snapshot,
            position=(row.last_event_created, row.last_event_id),
            source=TransitionSource.reconcile,
            now=now,
        )
        write_snapshot(conn, row, changes, applied, None, settings=settings)
    record_applied(telemetry, applied)
    return applied
