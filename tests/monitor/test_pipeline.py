"""Pipeline and payment probes over a real payment database (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.monitor.conftest import Database
from tests.monitor.support import config_of, running_monitor, seed_delivery, seed_session, seed_webhook

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)
PIPELINE = {"stuck_processing_after_seconds": 1800, "undelivered_after_seconds": 3600}


def test_paid_not_delivered_sessions_are_counted_with_the_amount_at_risk(database: Database) -> None:
    f = database.factory
    # Paid two hours ago, Stripe's transfer never found: at risk. Paid 2 h ago and verified: fine.
    lost = seed_session(f, status="fulfillment_complete", age=2 * HOUR, source_amount=Decimal("250.50"))
    seed_delivery(f, lost, status="not_found", due_age=2 * HOUR, expected_amount=Decimal("246.73"))
    fine = seed_session(f, status="fulfillment_complete", age=2 * HOUR)
    seed_delivery(f, fine, status="verified", due_age=2 * HOUR)
    # Paid 3 h ago, the wrong amount arrived (destination amount from Stripe): at risk.
    short = seed_session(
        f, status="fulfillment_complete", age=3 * HOUR, source_amount=Decimal("10"), destination_amount=Decimal("9.8")
    )
    seed_delivery(f, short, status="mismatch", due_age=3 * HOUR)
    # Paid a minute ago and still pending: within the deadline, not counted yet.
    recent = seed_session(f, status="fulfillment_complete", age=timedelta(minutes=1))
    seed_delivery(f, recent, status="pending", due_age=timedelta(minutes=1))
    # Stuck in processing for an hour; another only for a minute.
    seed_session(f, status="fulfillment_processing", age=HOUR)
    seed_session(f, status="fulfillment_processing", age=timedelta(minutes=1))
    # The last webhook was processed 10 minutes ago while sessions are open.
    seed_webhook(f, age=timedelta(minutes=10))

    with running_monitor(config_of({"database_url": database.url}, pipeline=PIPELINE)) as running:
        running.wait_runs("pipeline", "database", 1, outcome="success")
        value = running.value
        assert value("musdpay_monitor_pipeline_undelivered_sessions", status="not_found") == 1
        assert value("musdpay_monitor_pipeline_undelivered_sessions", status="mismatch") == 1
        assert value("musdpay_monitor_pipeline_undelivered_sessions", status="pending") == 0
        assert value("musdpay_monitor_pipeline_undelivered_sessions", status="missing") == 0
        assert value("musdpay_monitor_pipeline_undelivered_amount", currency="usd") == pytest.approx(260.50)
        assert value("musdpay_monitor_pipeline_undelivered_amount", currency="musd") == pytest.approx(256.53)
        oldest = value("musdpay_monitor_pipeline_undelivered_oldest_age_seconds") or 0
        assert 3 * 3600 - 5 <= oldest <= 3 * 3600 + 60
        assert value("musdpay_monitor_pipeline_stuck_sessions") == 1
        assert 3600 - 5 <= (value("musdpay_monitor_pipeline_stuck_oldest_age_seconds") or 0) <= 3600 + 60
        assert value("musdpay_monitor_pipeline_deliveries", status="verified") == 1
        assert value("musdpay_monitor_pipeline_deliveries", status="mismatch") == 1
        assert value("musdpay_monitor_pipeline_open_sessions") == 2
        assert 600 - 5 <= time.time() - (value("musdpay_monitor_pipeline_last_webhook_timestamp_seconds") or 0) <= 660
        assert 600 - 5 <= (value("musdpay_monitor_pipeline_webhook_silence_seconds") or 0) <= 660

        # Money paid now and lost later is picked up at the next run.
        late = seed_session(f, status="fulfillment_complete", age=5 * HOUR, source_amount=Decimal("1000"))
        running.wait(
            lambda: running.value("musdpay_monitor_pipeline_undelivered_sessions", status="missing") == 1,
            what="a paid session without a delivery row",
        )
        running.wait(lambda: running.value("musdpay_monitor_pipeline_undelivered_amount", currency="usd") == 1260.5)
        assert late.id  # counted by its delivery status only, never by id


def test_no_open_sessions_means_no_webhook_silence(sqlite_database: Database) -> None:
    f = sqlite_database.factory
    seed_session(f, status="rejected", age=HOUR)
    with running_monitor(config_of({"database_url": sqlite_database.url}, pipeline=PIPELINE)) as running:
        running.wait_runs("pipeline", "database", 1, outcome="success")
        assert running.value("musdpay_monitor_pipeline_open_sessions") == 0
        assert running.value("musdpay_monitor_pipeline_webhook_silence_seconds") == 0
        assert running.value("musdpay_monitor_pipeline_last_webhook_timestamp_seconds") == 0  # none ever
        assert running.value("musdpay_monitor_pipeline_undelivered_amount", currency="musd") == 0


def test_onramp_success_rate_and_volume_over_windows(database: Database) -> None:
    f = database.factory
    for amount in ("100.10", "200.20", "300.30"):
        seed_session(f, status="fulfillment_complete", age=timedelta(minutes=30), source_amount=Decimal(amount))
    seed_session(f, status="rejected", age=timedelta(minutes=20))
    seed_session(f, status="requires_payment", age=timedelta(minutes=50))  # abandoned (older than 40 min)
    seed_session(f, status="initialized", age=timedelta(minutes=5))  # still pending
    seed_session(f, status="fulfillment_complete", age=3 * HOUR, source_amount=Decimal("1000"))  # 24h only
    config = config_of(
        {"database_url": database.url},
        payments={"windows": {"1h": 3600, "24h": 86400}, "abandoned_after_seconds": 2400},
    )
    with running_monitor(config) as running:
        running.wait_runs("payments", "database", 1, outcome="success")

        def sessions(window: str, outcome: str) -> float | None:
            return running.value("musdpay_monitor_onramp_sessions", window=window, outcome=outcome)

        assert sessions("1h", "fulfilled") == 3
        assert sessions("1h", "rejected") == 1
        assert sessions("1h", "abandoned") == 1
        assert sessions("1h", "pending") == 1
        assert running.value("musdpay_monitor_onramp_success_ratio", window="1h") == pytest.approx(3 / 5)
        assert running.value("musdpay_monitor_onramp_payment_volume", window="1h", currency="usd") == pytest.approx(
            600.60
        )
        assert sessions("24h", "fulfilled") == 4
        assert running.value("musdpay_monitor_onramp_success_ratio", window="24h") == pytest.approx(4 / 6)
        assert running.value("musdpay_monitor_onramp_payment_volume", window="24h", currency="usd") == pytest.approx(
            1600.60
        )


def test_no_finished_session_means_no_success_ratio(sqlite_database: Database) -> None:
    seed_session(sqlite_database.factory, status="initialized", age=timedelta(minutes=1))
    with running_monitor(config_of({"database_url": sqlite_database.url}, payments={})) as running:
        running.wait_runs("payments", "database", 1, outcome="success")
        assert running.value("musdpay_monitor_onramp_sessions", window="1h", outcome="pending") == 1
        assert running.value("musdpay_monitor_onramp_success_ratio", window="1h") is None
