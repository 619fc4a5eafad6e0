"""The monitor's one writing job: send deliveries that gave up unverified back to the chain check.

A delivery the worker gave up on at its deadline (`not_found` or `failed` with "deadline passed") waits for an
operator. Stripe may still have delivered late (a congested chain, a late transaction id): this job does what
an operator's `POST .../delivery/verify` does (`payment.delivery.service.reopen_delivery`, audited as the
monitor), for such deliveries untouched for `after_seconds`. It never sends anything.

Read-only probes may run in every monitor instance; this one must act once. On PostgreSQL each round holds a
session-level advisory lock (`pg_try_advisory_lock`): a monitor that does not get it counts `lock_held` and
does nothing; the lock goes with its connection if the holder dies. SQLite is one host's file, where one
monitor is expected; there the round simply runs.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from monitor.config import ReverifyConfig
from monitor.db import DbRunner, is_sqlite
from monitor.metrics import MonitorMetrics
from monitor.scheduler import ProbeJob
from payment.auth.audit import Actor
from payment.core.config import Settings
from payment.core.metrics import LabelSets
from payment.delivery.models import Delivery
from payment.delivery.service import Action, reopen_delivery
from payment.delivery.status import DeliveryStatus

__all__ = ["LOCK_KEY", "OUTCOMES", "ReverifyJob", "metric_labels", "reverify_round"]

ACTED, LOCK_HELD = "acted", "lock_held"
OUTCOMES = (ACTED, LOCK_HELD)  # of a round (`musdpay_monitor_reverify_runs_total`)


def metric_labels() -> LabelSets:
    """The re-verification job's series, for `MonitorMetrics.initialise`."""
    return {"reverify_runs": [(outcome,) for outcome in OUTCOMES]}


# The job's PostgreSQL advisory lock key (any fixed bigint no other code of this database uses).
LOCK_KEY = 0x1E5D_2B7A_49C3_0F61
GAVE_UP = "deadline passed%"


def reverify_round(
    engine: Engine, factory: sessionmaker[Session], settings: Settings, config: ReverifyConfig, *, now: datetime
) -> int | None:
    """Reopen the due deliveries; the number reopened, or None when another monitor holds the lock."""
    if is_sqlite(engine):
        return _reopen(factory, settings, config, now)
    with engine.connect() as connection:
        if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar_one():
            connection.rollback()
            return None
        connection.commit()  # the lock is the session's, not the transaction's
        try:
            return _reopen(factory, settings, config, now)
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
            connection.commit()


def _reopen(factory: sessionmaker[Session], settings: Settings, config: ReverifyConfig, now: datetime) -> int:
    with factory() as db:
        due = (
            db.execute(
                select(Delivery.session_id)
                .where(
                    Delivery.status.in_([DeliveryStatus.not_found.value, DeliveryStatus.failed.value]),
                    Delivery.reason.like(GAVE_UP),
                    Delivery.updated_at < now - timedelta(seconds=config.after_seconds),
                )
                .order_by(Delivery.updated_at)
                .limit(config.max_per_run)
            )
            .scalars()
            .all()
        )
    actor = Actor(name=f"monitor@{socket.gethostname()}", role="admin", origin="monitor")
    for session_id in due:
        reopen_delivery(
            factory=factory, settings=settings, session_id=session_id, action=Action.verify, actor=actor, now=now
        )
    return len(due)


@dataclass
class ReverifyJob:
    engine: Engine  # a writing engine (the payment service's own settings)
    factory: sessionmaker[Session]
    settings: Settings
    runner: DbRunner
    config: ReverifyConfig
    metrics: MonitorMetrics

    def job(self) -> ProbeJob:
        return ProbeJob("reverify", "database", self.config, self.run)

    async def run(self) -> None:
        reopened = await self.runner.run(
            lambda: reverify_round(self.engine, self.factory, self.settings, self.config, now=datetime.now(UTC))
        )
        if reopened is None:
            self.metrics.reverify_runs.labels(LOCK_HELD).inc()
            return
        self.metrics.reverify_runs.labels(ACTED).inc()
        self.metrics.reverified.inc(reopened)
