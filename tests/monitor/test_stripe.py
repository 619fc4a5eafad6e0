"""Stripe probes against the Stripe emulator: reachability, latency, each fault, refunds and disputes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sandbox.stripe.config import EmulatorConfig
from sandbox.stripe.server import RunningEmulator, running_emulator
from tests.monitor.conftest import Database
from tests.monitor.support import RunningMonitor, config_of, running_monitor, seed_session

pytestmark = pytest.mark.integration

KEY = "sk_test_musdpay_monitor_tests"
STRIPE = {"interval_seconds": 0.2, "jitter_seconds": 0.02, "timeout_seconds": 2.0}


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    with running_emulator(EmulatorConfig(port=0, api_key=KEY)) as running:
        yield running


def control(emulator: RunningEmulator, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, f"{emulator.url}{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def settings(emulator: RunningEmulator, database: Database, key: str = KEY) -> dict[str, Any]:
    return {"stripe_secret_key": key, "stripe_api_base": emulator.url, "database_url": database.url}


def errors(running: RunningMonitor, kind: str, operation: str = "balance") -> float:
    return running.count("musdpay_monitor_stripe_errors_total", operation=operation, error_type=kind)


def test_reachability_latency_and_each_fault(emulator: RunningEmulator, sqlite_database: Database) -> None:
    with running_monitor(config_of(settings(emulator, sqlite_database), stripe=STRIPE)) as running:
        running.wait_runs("stripe", "stripe", 2, outcome="success")
        assert running.value("musdpay_monitor_stripe_up") == 1
        assert running.count("musdpay_monitor_stripe_request_duration_seconds_count", operation="balance") >= 2

        control(emulator, "PUT", "/_sandbox/faults", {"latency_ms": 150})
        running.wait_runs("stripe", "stripe", 2, outcome="success")
        total = running.count("musdpay_monitor_stripe_request_duration_seconds_sum", operation="balance")
        count = running.count("musdpay_monitor_stripe_request_duration_seconds_count", operation="balance")
        running.wait_runs("stripe", "stripe", 2, outcome="success")
        mean = (running.count("musdpay_monitor_stripe_request_duration_seconds_sum", operation="balance") - total) / (
            running.count("musdpay_monitor_stripe_request_duration_seconds_count", operation="balance") - count
        )
        assert mean >= 0.150

        for faults, kind in (
            ({"error_rate": 1.0}, "server_error"),
            ({"rate_limit_rate": 1.0}, "rate_limited"),
            ({"down": True}, "server_error"),
            ({"latency_ms": 3000}, "timeout"),
        ):
            before = errors(running, kind)
            control(emulator, "PUT", "/_sandbox/faults", faults)
            started = time.monotonic()
            running.wait(lambda k=kind, b=before: errors(running, k) > b, what=kind)  # type: ignore[misc]
            assert time.monotonic() - started <= 2 * 0.2 + 2.0 + 1.0  # two intervals, the timeout, slack
            assert running.value("musdpay_monitor_stripe_up") == 0
            control(emulator, "PUT", "/_sandbox/faults", {})
            running.wait(lambda: running.value("musdpay_monitor_stripe_up") == 1, what="healed")


def test_a_refused_key_is_an_authentication_error(emulator: RunningEmulator, sqlite_database: Database) -> None:
    wrong = settings(emulator, sqlite_database, key="sk_test_not_the_right_one")
    with running_monitor(config_of(wrong, stripe=STRIPE)) as running:
        running.wait(lambda: errors(running, "authentication") >= 2)
        assert running.value("musdpay_monitor_stripe_up") == 0


def test_refunds_and_disputes_are_counted_with_rates(emulator: RunningEmulator, sqlite_database: Database) -> None:
    # Before the monitor starts: one refund an hour ago (in the 24h window, not counted as new).
    control(emulator, "POST", "/_sandbox/refunds", {"amount": 500, "created": int(time.time()) - 3600})
    for _ in range(4):
        seed_session(sqlite_database.factory, status="fulfillment_complete", age=timedelta(minutes=10))
    config = config_of(
        settings(emulator, sqlite_database),
        stripe={**STRIPE, "windows": {"1h": 3000, "24h": 86400}},
        payments={"windows": {"1h": 3000, "24h": 86400}},
    )
    with running_monitor(config) as running:
        running.wait_runs("stripe", "stripe", 1, outcome="success")
        running.wait_runs("payments", "database", 1, outcome="success")
        running.wait(lambda: running.value("musdpay_monitor_stripe_window_refunds", window="24h") == 1)
        assert running.value("musdpay_monitor_stripe_window_refunds", window="1h") == 0
        assert running.value("musdpay_monitor_stripe_window_disputes", window="24h") == 0
        assert running.value("musdpay_monitor_stripe_refunds_total", status="succeeded") is None  # not new
        running.wait(lambda: running.value("musdpay_monitor_stripe_dispute_ratio", window="1h") == 0)

        control(emulator, "POST", "/_sandbox/refunds", {"amount": 1250, "currency": "usd"})
        control(emulator, "POST", "/_sandbox/refunds", {"amount": 300, "currency": "jpy", "status": "pending"})
        control(emulator, "POST", "/_sandbox/disputes", {"amount": 9999, "reason": "product_not_received"})
        running.wait(lambda: running.value("musdpay_monitor_stripe_window_refunds", window="1h") == 2)
        running.wait(lambda: running.value("musdpay_monitor_stripe_window_disputes", window="1h") == 1)
        assert running.value("musdpay_monitor_stripe_refunds_total", status="succeeded") == 1
        assert running.value("musdpay_monitor_stripe_refunds_total", status="pending") == 1
        assert running.value("musdpay_monitor_stripe_refunded_amount_total", currency="usd") == 12.50
        assert running.value("musdpay_monitor_stripe_refunded_amount_total", currency="jpy") == 300
        assert running.value("musdpay_monitor_stripe_disputes_total", reason="product_not_received") == 1
        assert running.value("musdpay_monitor_stripe_disputed_amount_total", currency="usd") == 99.99
        assert running.value("musdpay_monitor_stripe_window_refunds", window="24h") == 3
        running.wait(lambda: running.value("musdpay_monitor_stripe_refund_ratio", window="1h") == 2 / 4)
        assert running.value("musdpay_monitor_stripe_dispute_ratio", window="1h") == 1 / 4
        # Polled again and again: each object is counted once.
        running.wait_runs("stripe", "stripe", 3, outcome="success")
        assert running.value("musdpay_monitor_stripe_refunds_total", status="succeeded") == 1
        assert running.value("musdpay_monitor_stripe_disputes_total", reason="product_not_received") == 1
