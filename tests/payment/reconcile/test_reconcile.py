"""Stripe reconciliation over real processes: the emulator, the API (uvicorn) and `musdpay reconcile`, on SQLite
and PostgreSQL. Webhooks are lost for real: the API is stopped while the emulator's (short) retries run out, or
the endpoint is disabled while a session moves."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from payment.onramp.models import OnrampSession, SessionStatusChange
from payment.reconcile.models import ReconcileState
from payment.webhooks.models import WebhookEvent
from tests.support.services import free_port, musdpay_command
from tests.support.stack import Emulator, PaymentApi, api_environment, running_emulator, start_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"
SESSIONS = "/api/v1/onramp/sessions"
UPDATED = "crypto.onramp_session_updated"
# Two attempts 50-100 ms apart: the emulator gives a delivery up in well under a second.
FAST_RETRIES = ["--delivery-max-attempts", "2", "--delivery-backoff-base", "0.1"]


@pytest.fixture
def emulator(tmp_path: Path, api_port: int) -> Iterator[Emulator]:
    with running_emulator(tmp_path, webhook_port=api_port, extra=FAST_RETRIES) as emulator:
        yield emulator


def environment(database_url: str, emulator: Emulator, **overrides: str) -> dict[str, str]:
    settings = {
        "reconcile_interval_seconds": "0",
        "reconcile_stale_seconds": "0",
        "stripe_max_network_retries": "0",
        "delivery_worker_enabled": "false",
    }
    return api_environment(database_url, emulator.url, **{**settings, **overrides})


def create(api: PaymentApi) -> str:
    with api.client() as client:
        response = client.post(
            SESSIONS,
            json={"walletAddress": WALLET, "sourceAmount": "100.00"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
    assert response.status_code == 201, response.text
    session_id: str = response.json()["id"]
    return session_id


def stripe_id(db: sessionmaker[Session], session_id: str) -> str:
    with db() as session:
        row = session.get(OnrampSession, session_id)
        assert row is not None
        assert row.stripe_session_id is not None
        return row.stripe_session_id


def statuses(db: sessionmaker[Session]) -> dict[str, str]:
    with db() as session:
        return {row.stripe_session_id or "": row.status for row in session.scalars(select(OnrampSession))}


def stripe_statuses(emulator: Emulator) -> dict[str, str]:
    return {s["id"]: s["status"] for s in emulator.sessions()}


def history(db: sessionmaker[Session]) -> list[tuple[str, str, str, str | None]]:
    with db() as session:
        changes = session.scalars(select(SessionStatusChange).order_by(SessionStatusChange.id))
        return [(c.session_id, c.to_status, c.source, c.event_id) for c in changes]


def recorded(db: sessionmaker[Session]) -> dict[str, str]:
    with db() as session:
        return {e.id: e.origin for e in session.scalars(select(WebhookEvent))}


def failed_events(emulator: Emulator) -> list[dict[str, Any]]:
    page = emulator.sdk().raw_request("get", "/v1/events", type=UPDATED, delivery_success=False, limit=100).data
    return list(page["data"])


def endpoint_enabled(emulator: Emulator, enabled: bool) -> None:
    client = emulator.sdk()
    (endpoint,) = client.raw_request("get", "/v1/webhook_endpoints").data["data"]
    client.raw_request("post", f"/v1/webhook_endpoints/{endpoint['id']}", disabled=not enabled)


def reconcile(env: dict[str, str], **overrides: str) -> subprocess.Popen[str]:
    full = {**os.environ, **env, **{f"MUSDPAY_{k.upper()}": v for k, v in overrides.items()}}
    return subprocess.Popen(
        musdpay_command("reconcile"), env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finished(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def summary(out: str) -> tuple[int, int, int]:
    match = re.search(r"(\d+) sessions checked, (\d+) corrected, (\d+) events recovered", out)
    assert match, out
    checked, corrected, recovered = (int(group) for group in match.groups())
    return checked, corrected, recovered


def test_one_pass_after_an_outage_brings_every_session_to_stripes_truth(
    tmp_path: Path, api_port: int, database_url: str, emulator: Emulator, db: sessionmaker[Session]
) -> None:
    env = environment(database_url, emulator)
    api = start_api(tmp_path, api_port, env)
    paid, waiting, silent, untouched = (create(api) for _ in range(4))
    ids = {name: stripe_id(db, session) for name, session in
           {"paid": paid, "waiting": waiting, "silent": silent, "untouched": untouched}.items()}  # fmt: skip
    api.process.stop()  # longer than the emulator's retry window, while sessions advance

    emulator.advance(ids["paid"], "fulfillment_complete")
    emulator.advance(ids["waiting"], "requires_payment")
    wait_until(lambda: len(failed_events(emulator)) == 4, what="the emulator to give the deliveries up")
    lost = failed_events(emulator)
    # A step whose webhook is never sent at all: only retrieving the session can find it.
    endpoint_enabled(emulator, False)
    emulator.advance(ids["silent"], "fulfillment_processing")
    endpoint_enabled(emulator, True)
    assert len(failed_events(emulator)) == 4

    # Events older than the cursor are not ingested (sessions are left alone here: nothing is stale).
    with db.begin() as session:
        newest = max(event["created"] for event in lost)
        session.add(ReconcileState(name="stripe", events_cursor=newest + 1, updated_at=datetime.now(UTC)))
    code, out, err = finished(reconcile(env, reconcile_stale_seconds="100000"))
    assert code == 0, err
    assert summary(out) == (0, 0, 0)
    assert recorded(db) == {}

    # Two passes at once, from the start of Stripe's window: every change lands exactly once.
    with db.begin() as session:
        session.execute(delete(ReconcileState))
    before = history(db)
    results = [finished(p) for p in [reconcile(env), reconcile(env)]]
    assert [code for code, _, _ in results] == [0, 0], results
    totals = [summary(out) for _, out, _ in results]
    assert sum(recovered for _, _, recovered in totals) == 4
    assert statuses(db) == stripe_statuses(emulator)
    assert statuses(db)[ids["paid"]] == "fulfillment_complete"
    assert statuses(db)[ids["silent"]] == "fulfillment_processing"
    assert recorded(db) == {event["id"]: "reconcile" for event in lost}
    added = history(db)[len(before) :]
    assert sorted((to, source, event is None) for _, to, source, event in added) == sorted(
        [
            ("requires_payment", "reconcile", False),
            ("fulfillment_processing", "reconcile", False),
            ("fulfillment_complete", "reconcile", False),
            ("requires_payment", "reconcile", False),
            ("fulfillment_processing", "reconcile", True),  # the silent one: retrieved, no event
        ]
    )

    # Once more: nothing left to do, nothing changes.
    code, out, _ = finished(reconcile(env))
    assert code == 0
    assert summary(out)[1:] == (0, 0)
    assert history(db) == history(db)[: len(before) + 5]


def metrics_of(api: PaymentApi) -> dict[str, float]:
    text = httpx.get(f"{api.url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("musdpay_reconcile_"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def runs(api: PaymentApi, outcome: str) -> float:
    return metrics_of(api).get(f'musdpay_reconcile_runs_total{{outcome="{outcome}"}}', 0.0)


def test_the_apis_periodic_pass_corrects_a_lost_webhook_on_one_instance_only(
    tmp_path: Path, api_port: int, database_url: str, emulator: Emulator, db: sessionmaker[Session]
) -> None:
    env = environment(database_url, emulator, reconcile_interval_seconds="0.5")
    first = start_api(tmp_path, api_port, env)
    second = start_api(tmp_path, free_port(), env)
    try:
        session = create(first)
        endpoint_enabled(emulator, False)
        emulator.advance(stripe_id(db, session), "fulfillment_complete")
        wait_until(lambda: statuses(db)[stripe_id(db, session)] == "fulfillment_complete", timeout=15,
                   what="the periodic pass to correct the session")  # fmt: skip
        corrected = [entry for entry in history(db) if entry[0] == session and entry[2] == "reconcile"]
        assert [to for _, to, _, _ in corrected] == ["fulfillment_complete"]
        wait_until(lambda: runs(first, "skipped") + runs(second, "skipped") >= 2, what="the other instance to skip")
        successes = (runs(first, "success"), runs(second, "success"))
        assert min(successes) == 0, successes  # one instance holds the lease throughout
        assert max(successes) > 0, successes
        gauges = [metrics_of(api)["musdpay_reconcile_last_success_timestamp_seconds"] for api in (first, second)]
        assert all(gauge > time.time() - 60 for gauge in gauges), gauges  # the skipping one shows the holder's
        assert metrics_of(first)["musdpay_reconcile_interval_seconds"] == 0.5
    finally:
        first.process.stop()
        second.process.stop()


def test_stripe_errors_and_rate_limits_back_off_and_the_pass_succeeds_once_healed(
    tmp_path: Path, api_port: int, database_url: str, emulator: Emulator, db: sessionmaker[Session]
) -> None:
    env = environment(database_url, emulator, reconcile_interval_seconds="0.5", reconcile_retry_initial_seconds="0.1")
    api = start_api(tmp_path, api_port, env)
    try:
        session = create(api)
        endpoint_enabled(emulator, False)
        emulator.set_faults(rate_limit_rate=1.0)  # before the step, so no pass can see it yet
        emulator.advance(stripe_id(db, session), "requires_payment")
        wait_until(lambda: runs(api, "rate_limited") >= 2, what="rate-limited passes")
        emulator.set_faults(rate_limit_rate=0.0, error_rate=1.0)
        wait_until(lambda: runs(api, "stripe_error") >= 2, what="passes failing on 500s")
        assert statuses(db)[stripe_id(db, session)] == "initialized"
        emulator.set_faults(down=True, error_rate=0.0)
        code, _, err = finished(reconcile(env))
        assert code == 1
        assert "Stripe unavailable (server_error)" in err
        emulator.set_faults(down=False)
        wait_until(lambda: statuses(db)[stripe_id(db, session)] == "requires_payment", what="the healed pass")
        assert runs(api, "success") >= 1
        assert runs(api, "failed") == 0
        assert httpx.get(f"{api.url}/healthz", timeout=5).status_code == 200
    finally:
        api.process.stop()


def test_the_command_says_when_the_database_is_unreachable(tmp_path: Path, emulator: Emulator) -> None:
    env = environment("postgresql+psycopg://postgres@127.0.0.1:1/none", emulator)
    code, _, err = finished(reconcile(env))
    assert code == 1
    assert "database unavailable" in err
