"""Probing the payment pipeline in the database: money paid and not delivered, sessions stuck, webhooks silent.

- **Stuck**: sessions in `fulfillment_processing` for longer than `stuck_processing_after_seconds` (since their
  last status change to it, else their last update): count and the oldest one's age.
- **Paid, not delivered**: sessions in `fulfillment_complete` whose delivery is not `verified`
  `undelivered_after_seconds` after it became due (its `created_at`), or that have no delivery row at all
  (`missing`; the outbox makes that impossible for sessions fulfilled since delivery exists): count by delivery
  status, the oldest one's age, and the amount at risk, both the fiat paid (`usd`, ...) and the MUSD owed
  (`musd`: the treasury's committed amount, else Stripe's destination amount).
- **Webhook freshness**: when the last webhook was processed, and its age as "silence" while sessions are
  open (not final, touched within `open_session_horizon_seconds`); with no webhook ever, the silence counts
  from the oldest open session's creation.
- **Deliveries by status**, all time (a `mismatch` or `failed` needs a person).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from monitor.config import PipelineConfig
from monitor.db import DbRunner
from monitor.metrics import MonitorMetrics
from monitor.scheduler import ProbeFailed, ProbeJob
from payment.delivery.models import Delivery
from payment.delivery.status import DeliveryStatus
from payment.onramp.models import OnrampSession, SessionStatusChange
from payment.onramp.status import OPEN_STATUSES, SessionStatus
from payment.webhooks.models import WebhookEvent

__all__ = ["PipelineProbe", "PipelineReading", "read_pipeline"]

MISSING = "missing"  # a paid session without a delivery row
UNDELIVERED_STATUSES = (*(s.value for s in DeliveryStatus if s is not DeliveryStatus.verified), MISSING)


@dataclass(frozen=True)
class PipelineReading:
    stuck: int
    stuck_oldest_seconds: float
    undelivered: dict[str, int]  # by delivery status (or missing)
    undelivered_oldest_seconds: float
    amount_at_risk: dict[str, Decimal]  # by currency: fiat codes and "musd"
    deliveries: dict[str, int]
    open_sessions: int
    last_webhook_at: datetime | None
    webhook_silence_seconds: float


def read_pipeline(engine: Engine, config: PipelineConfig, *, now: datetime) -> PipelineReading:
    with Session(engine) as db:
        # Stuck in fulfillment_processing.
        entered = (
            select(SessionStatusChange.session_id, func.max(SessionStatusChange.occurred_at).label("at"))
            .where(SessionStatusChange.to_status == SessionStatus.fulfillment_processing.value)
            .group_by(SessionStatusChange.session_id)
            .subquery()
        )
        processing = db.execute(
            select(OnrampSession.updated_at, entered.c.at)
            .outerjoin(entered, entered.c.session_id == OnrampSession.id)
            .where(OnrampSession.status == SessionStatus.fulfillment_processing.value)
        ).all()
        stuck_ages = [
            age
            for updated_at, entered_at in processing
            if (age := (now - _utc(entered_at or updated_at)).total_seconds()) >= config.stuck_processing_after_seconds
        ]

        # Paid and not verified past the deadline.
        cutoff = now - timedelta(seconds=config.undelivered_after_seconds)
        rows = db.execute(
            select(
                OnrampSession.source_amount,
                OnrampSession.source_currency,
                OnrampSession.destination_amount,
                OnrampSession.updated_at,
                Delivery.status,
                Delivery.expected_amount,
                Delivery.created_at,
            )
            .outerjoin(Delivery, Delivery.session_id == OnrampSession.id)
            .where(
                OnrampSession.status == SessionStatus.fulfillment_complete.value,
                or_(
                    and_(Delivery.session_id.is_(None), OnrampSession.updated_at < cutoff),
                    and_(Delivery.status != DeliveryStatus.verified.value, Delivery.created_at < cutoff),
                ),
            )
        ).all()
        undelivered: dict[str, int] = dict.fromkeys(UNDELIVERED_STATUSES, 0)
        at_risk: dict[str, Decimal] = defaultdict(Decimal)
        oldest_due: datetime | None = None
        for source_amount, currency, destination_amount, updated_at, status, expected, due_at in rows:
            undelivered[status or MISSING] = undelivered.get(status or MISSING, 0) + 1
            at_risk[currency.lower()] += source_amount
            owed = expected if expected is not None else destination_amount
            if owed is not None:
                at_risk["musd"] += owed
            due = _utc(due_at or updated_at)
            oldest_due = due if oldest_due is None or due < oldest_due else oldest_due

        deliveries = dict.fromkeys((s.value for s in DeliveryStatus), 0)
        for status, count in db.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all():
            deliveries[status] = int(count)

        # Webhook freshness while sessions wait for them.
        horizon = now - timedelta(seconds=config.open_session_horizon_seconds)
        open_count, oldest_open = db.execute(
            select(func.count(), func.min(OnrampSession.created_at)).where(
                OnrampSession.status.in_([s.value for s in OPEN_STATUSES]), OnrampSession.updated_at >= horizon
            )
        ).one()
        last_webhook = db.execute(select(func.max(WebhookEvent.processed_at))).scalar_one()

    silence = 0.0
    if open_count:
        since = last_webhook if last_webhook is not None else oldest_open
        silence = max((now - _utc(since)).total_seconds(), 0.0) if since is not None else 0.0
    return PipelineReading(
        stuck=len(stuck_ages),
        stuck_oldest_seconds=max(stuck_ages, default=0.0),
        undelivered=undelivered,
        undelivered_oldest_seconds=0.0 if oldest_due is None else max((now - oldest_due).total_seconds(), 0.0),
        amount_at_risk=dict(at_risk),
        deliveries=deliveries,
        open_sessions=int(open_count),
        last_webhook_at=None if last_webhook is None else _utc(last_webhook),
        webhook_silence_seconds=silence,
    )


def _utc(value: datetime | str) -> datetime:
    """Aggregates (min/max) come back from SQLite as text; columns come back as aware datetimes."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class PipelineProbe:
    engine: Engine
    runner: DbRunner
    config: PipelineConfig
    metrics: MonitorMetrics
    _currencies: frozenset[str] = frozenset()

    def job(self) -> ProbeJob:
        return ProbeJob("pipeline", "database", self.config, self.probe)

    async def probe(self) -> None:
        try:
            reading = await self.runner.run(lambda: read_pipeline(self.engine, self.config, now=datetime.now(UTC)))
        except SQLAlchemyError as exc:  # unreachable, or not the payment schema: the database probe says which
            raise ProbeFailed(f"database error ({type(exc).__name__})") from None
        m = self.metrics
        m.stuck_sessions.set(reading.stuck)
        m.stuck_oldest.set(reading.stuck_oldest_seconds)
        for status, count in reading.undelivered.items():
            m.undelivered_sessions.labels(status).set(count)
        m.undelivered_oldest.set(reading.undelivered_oldest_seconds)
        # Currencies seen before and now absent go back to 0 (not left at their last value).
        currencies = self._currencies | set(reading.amount_at_risk) | {"musd"}
        for currency in currencies:
            m.undelivered_amount.labels(currency).set(float(reading.amount_at_risk.get(currency, Decimal(0))))
        self._currencies = frozenset(currencies)
        for status, count in reading.deliveries.items():
            m.deliveries.labels(status).set(count)
        m.open_sessions.set(reading.open_sessions)
        if reading.last_webhook_at is not None:
            m.webhook_last.set(reading.last_webhook_at.timestamp())
        m.webhook_silence.set(reading.webhook_silence_seconds)
