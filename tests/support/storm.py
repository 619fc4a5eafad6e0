"""The webhook storm of tests/chaos/test_webhook_storm_*.py (issue 15.5), one function for both databases: the
API SIGKILLed twice during a storm of Stripe webhooks, with duplicates and shuffled order.

The emulator sends every event (its own delivery worker: signed POSTs, retried with backoff on any failure, as
Stripe does), doubles 20% of the deliveries and permutes them in windows; the test kills the API with SIGKILL
(no shutdown, no rollback) once a third and again once two thirds of the events are stored, and starts it again
at once. Reconciliation is off, so only webhooks can move a session: a lost webhook would show. At the end every
session equals Stripe's, every Stripe event is stored once, and every transition is recorded once.
"""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import func, select

from payment.core.config import Settings
from payment.core.db import create_db_engine, make_session_factory
from payment.webhooks.models import WebhookEvent
from tests.support.chaos import Stopwatch, compare_with_stripe, create_sessions, report
from tests.support.services import free_port
from tests.support.stack import api_environment, running_emulator, start_api
from tests.support.waiting import wait_until

# 700 sessions -> 2,030 events (3 per paid session, 2 per rejected one): the 2,000 webhooks,
# plus 20% duplicated deliveries. Measured to fit the module budget on two busy cores (docs/reliability.md).
SESSIONS = 700
MIN_EVENTS = 2_000
DUPLICATE_RATE = 0.2
KILLS = 2
# Retries fast enough to finish within the test, and enough of them to outlast two restarts of the API.
EMULATOR_FLAGS = ["--delivery-max-attempts", "40", "--delivery-backoff-base", "0.1", "--delivery-backoff-cap", "1"]


def _steps(index: int) -> list[str]:
    """What Stripe does with session `index`: most are paid (3 events), one in ten paid for nothing (2 events)."""
    return ["requires_payment", "rejected"] if index % 10 == 9 else ["fulfillment_complete"]


__all__ = ["webhook_storm"]


def webhook_storm(tmp_path: Path, database_url: str) -> dict[str, object]:
    """Run the storm on this database, report its figures and assert nothing lost, nothing twice."""
    backend = database_url.split(":", 1)[0].split("+", 1)[0]
    port = free_port()
    with running_emulator(tmp_path, webhook_port=port, extra=EMULATOR_FLAGS) as emulator:
        env = api_environment(
            database_url,
            emulator.url,
            reconcile_interval_seconds="0",  # webhooks alone move the sessions: nothing may heal a loss
            delivery_worker_enabled="false",  # no chain here; delivery is another scenario
            rate_limit_enabled="false",  # one client creates every session
        )
        api = start_api(tmp_path, port, env)
        engine = create_db_engine(Settings(database_url=database_url))
        factory = make_session_factory(engine)
        try:
            clock = Stopwatch()
            created = create_sessions(api, SESSIONS)
            created_seconds = clock.elapsed()
            emulator.set_faults(duplicate_rate=DUPLICATE_RATE, shuffle=True, seed=20261204)

            def stored() -> int:
                with factory() as db:
                    return int(db.scalar(select(func.count()).select_from(WebhookEvent)) or 0)

            # Stripe moves the sessions (the buyers pay) while the API is being killed.
            local = threading.local()
            clients: list[httpx.Client] = []

            def pay(index: int) -> None:
                client = getattr(local, "client", None)
                if client is None:  # one keep-alive client per thread (Emulator.advance makes one per call)
                    client = local.client = httpx.Client(base_url=emulator.url, timeout=30)
                    clients.append(client)
                for status in _steps(index):
                    path = f"/_sandbox/onramp_sessions/{created[index]['stripeSessionId']}/advance"
                    client.post(path, json={"status": status}).raise_for_status()

            def advance_all() -> None:
                try:
                    with ThreadPoolExecutor(max_workers=4) as pool:
                        list(pool.map(pay, range(len(created))))
                finally:
                    for client in clients:
                        client.close()

            advancing = threading.Thread(target=advance_all, daemon=True)
            storm = Stopwatch()
            advancing.start()
            expected = SESSIONS * 2.9  # about the events the storm makes; the kills fall at a third and two thirds
            recoveries = []
            for kill in range(1, KILLS + 1):
                share = expected * kill / (KILLS + 1)
                wait_until(lambda: stored() >= share, timeout=60, what=f"{share:.0f} events stored before kill {kill}")  # noqa: B023
                api.process.signal(signal.SIGKILL)
                api.process.popen.wait(timeout=10)
                down = Stopwatch()
                api = start_api(tmp_path, port, env)
                recoveries.append(down.elapsed())
            advancing.join(timeout=60)
            assert not advancing.is_alive(), "the emulator did not finish advancing the sessions"
            advanced_seconds = storm.elapsed()
            events = [e for e in emulator.events() if e["type"] == "crypto.onramp_session_updated"]

            def delivered() -> bool:  # the emulator's retries are over: everything reached the API
                return bool(emulator.control("GET", "/_sandbox/health")["pending_deliveries"] == 0)

            wait_until(delivered, timeout=60, interval=0.2, what="the emulator to deliver every event")
            storm_seconds = storm.elapsed()
            log = emulator.deliveries()
            truth = {s["id"]: s["status"] for s in emulator.sessions()}
            ledger = compare_with_stripe(factory, truth, events)
        finally:
            api.process.stop()
            engine.dispose()
    # The log has one entry per attempt: a duplicate's own retries are flagged duplicate too.
    duplicates = len({d["event_id"] for d in log if d["duplicate"]})
    duplicates_delivered = sum(1 for d in log if d["duplicate"] and d["delivered"])
    failed = sum(1 for d in log if not d["delivered"])
    figures: dict[str, object] = {
        "database": backend,
        "sessions": SESSIONS,
        "events": ledger.events,
        "delivery_attempts": len(log),
        "events_duplicated": duplicates,
        "duplicates_delivered": duplicates_delivered,
        "failed_attempts": failed,
        "kills": KILLS,
        "restart_seconds": recoveries,
        "create_seconds": created_seconds,
        "advance_seconds": advanced_seconds,
        "storm_seconds": storm_seconds,
        "lost": ledger.lost,
        "duplicated": ledger.duplicated,
    }
    report(tmp_path, f"webhook-storm-{backend}", figures)
    assert ledger.events >= MIN_EVENTS
    assert duplicates > 0.1 * ledger.events  # the storm did carry duplicates (20% of the events, by the seed)
    assert duplicates_delivered >= duplicates  # and each duplicate reached the API (after retries if need be)
    assert failed > 0  # the kills did refuse deliveries, which Stripe retried
    assert ledger.lost_events == [], ledger.lost_events[:5]
    assert ledger.wrong_sessions == [], ledger.wrong_sessions[:5]
    assert ledger.extra_events == []
    assert ledger.repeated_transitions == [], ledger.repeated_transitions[:5]
    assert ledger.broken_histories == [], ledger.broken_histories[:5]
    return figures
