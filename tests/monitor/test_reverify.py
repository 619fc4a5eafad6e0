"""The writing job: one monitor acts at a time (PostgreSQL advisory lock), and it only reopens the chain check."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from monitor.probes.reverify import LOCK_KEY
from payment.delivery.models import Delivery
from tests.monitor.conftest import Database
from tests.monitor.support import config_of, running_monitor, seed_delivery, seed_session

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)


def test_only_the_lock_holder_reverifies(database: Database) -> None:
    f = database.factory
    gave_up = seed_session(f, status="fulfillment_complete", age=3 * HOUR)
    seed_delivery(f, gave_up, status="not_found", due_age=3 * HOUR, reason="deadline passed: no such transaction")
    recent = seed_session(f, status="fulfillment_complete", age=3 * HOUR)
    seed_delivery(
        f, recent, status="not_found", due_age=timedelta(minutes=5), reason="deadline passed: no such transaction"
    )
    verified = seed_session(f, status="fulfillment_complete", age=3 * HOUR)
    seed_delivery(f, verified, status="verified", due_age=3 * HOUR)
    config = config_of({"database_url": database.url}, reverify={"after_seconds": 3600})

    postgres = database.url.startswith("postgresql")
    holder = None
    if postgres:  # another monitor holds the lock: this one must not act
        holder = psycopg.connect(database.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    try:
        with running_monitor(config) as running:
            if holder is not None:
                running.wait(lambda: running.count("musdpay_monitor_reverify_runs_total", outcome="lock_held") >= 2)
                assert running.value("musdpay_monitor_reverify_runs_total", outcome="acted") == 0
                with f() as db:
                    assert db.get(Delivery, gave_up.id).status == "not_found"  # type: ignore[union-attr]
                holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            running.wait(lambda: running.count("musdpay_monitor_reverified_deliveries_total") >= 1)
            running.wait_runs("reverify", "database", 2, outcome="success")
            assert running.count("musdpay_monitor_reverified_deliveries_total") == 1  # once, not every round
    finally:
        if holder is not None:
            holder.close()
    with f() as db:
        reopened = db.get(Delivery, gave_up.id)
        untouched = db.get(Delivery, recent.id)
        assert reopened is not None
        assert untouched is not None
        assert reopened.status == "pending"
        assert reopened.reason == "verify requested by an operator"
        assert untouched.status == "not_found"
