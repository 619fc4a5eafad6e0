"""The whole flow over real HTTP: the API (uvicorn, its own process) -> the official Stripe SDK -> the emulator,
and the emulator's signed webhooks back into the API. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from payment.onramp.models import OnrampSession, SessionStatusChange
from payment.webhooks.models import WebhookEvent
from tests.support.services import free_port
from tests.support.stack import Emulator, PaymentApi, api_environment, running_emulator, start_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"
SESSIONS = "/api/v1/onramp/sessions"


@pytest.fixture
def emulator(tmp_path: Path, api_port: int) -> Iterator[Emulator]:
    with running_emulator(tmp_path, webhook_port=api_port) as emulator:
        yield emulator


@pytest.fixture
def api(tmp_path: Path, api_port: int, database_url: str, emulator: Emulator) -> Iterator[PaymentApi]:
    api = start_api(tmp_path, api_port, api_environment(database_url, emulator.url))
    yield api
    api.process.stop()


def create(api: PaymentApi, key: str | None = None, **body: Any) -> httpx.Response:
    payload = {"walletAddress": WALLET, "sourceAmount": "100.00", **body}
    headers = {"Idempotency-Key": key} if key else {}
    with api.client() as client:
        return client.post(SESSIONS, json=payload, headers=headers)


def get(api: PaymentApi, session_id: str) -> dict[str, Any]:
    with api.client() as client:
        response = client.get(f"{SESSIONS}/{session_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


def rows(db: sessionmaker[Session], model: type[Any] = OnrampSession) -> int:
    with db() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_session_goes_from_creation_to_fulfillment(api: PaymentApi, emulator: Emulator, db: Any) -> None:
    response = create(api, key=str(uuid.uuid4()))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "initialized"
    assert created["clientSecret"].startswith("cos_")
    assert created["sourceAmount"] == "100.00"
    assert response.headers["location"] == f"{SESSIONS}/{created['id']}"

    at_stripe = emulator.sdk().raw_request("get", f"/v1/crypto/onramp_sessions/{created['stripeSessionId']}").data
    details = at_stripe["transaction_details"]
    assert details["wallet_address"] == WALLET
    assert (details["source_amount"], details["destination_network"]) == ("100.00", "mezo")
    assert details["lock_wallet_address"] is True
    assert at_stripe["metadata"]["musdpay_session_id"] == created["id"]

    emulator.advance(created["stripeSessionId"], "fulfillment_complete")
    final = wait_until(
        lambda: (s := get(api, created["id"]))["status"] == "fulfillment_complete" and s,
        timeout=20,
        what="fulfillment_complete",
    )
    assert final["transactionDetails"]["transactionId"].startswith("0x")
    assert final["transactionDetails"]["destinationAmount"] is not None
    with db() as session:
        history = session.scalars(
            select(SessionStatusChange)
            .where(SessionStatusChange.session_id == created["id"])
            .order_by(SessionStatusChange.id)
        ).all()
    assert [(h.from_status, h.to_status) for h in history] == [
        ("creating", "initialized"),
        ("initialized", "requires_payment"),
        ("requires_payment", "fulfillment_processing"),
        ("fulfillment_processing", "fulfillment_complete"),
    ]


def test_the_same_idempotency_key_returns_the_same_session_and_creates_once(
    api: PaymentApi, emulator: Emulator, db: Any
) -> None:
    key = str(uuid.uuid4())
    first = create(api, key=key)
    again = create(api, key=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["clientSecret"] == first.json()["clientSecret"]
    assert again.headers["idempotent-replayed"] == "true"
    other_body = create(api, key=key, sourceAmount="101.00")
    assert other_body.status_code == 409
    assert other_body.headers["content-type"] == "application/problem+json"
    assert other_body.json()["type"] == "/problems/idempotency-key-reused"
    assert len(emulator.sessions()) == 1
    assert rows(db) == 1


def test_concurrent_requests_with_one_key_create_one_session(api: PaymentApi, emulator: Emulator, db: Any) -> None:
    key = str(uuid.uuid4())
    emulator.set_faults(latency_ms=300)
    results: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: results.append(create(api, key=key))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    codes = sorted(r.status_code for r in results)
    assert 201 in codes
    assert set(codes) <= {201, 409}
    for conflict in (r for r in results if r.status_code == 409):
        assert conflict.json()["type"] == "/problems/request-in-progress"
        assert conflict.headers["retry-after"] == "1"
    assert len({r.json()["id"] for r in results if r.status_code == 201}) == 1
    assert len(emulator.sessions()) == 1
    assert rows(db) == 1


@pytest.mark.parametrize(
    ("faults", "status", "problem"),
    [
        ({"down": True}, 503, "/problems/stripe-unavailable"),
        ({"error_rate": 1.0}, 503, "/problems/stripe-unavailable"),
        ({"rate_limit_rate": 1.0}, 503, "/problems/stripe-rate-limited"),
    ],
)
def test_stripe_failures_give_a_retryable_problem_and_leave_no_row(
    api: PaymentApi, emulator: Emulator, db: Any, faults: dict[str, Any], status: int, problem: str
) -> None:
    emulator.set_faults(**faults)
    response = create(api, key=str(uuid.uuid4()))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == problem
    assert int(response.headers["retry-after"]) >= 1
    assert rows(db) == 0


def test_stripe_unreachable_gives_503_and_no_row(tmp_path: Path, database_url: str, db: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    api = start_api(tmp_path, free_port(), api_environment(database_url, dead, stripe_max_network_retries="0"))
    try:
        response = create(api)
        assert response.status_code == 503
        assert response.json()["type"] == "/problems/stripe-unavailable"
        assert rows(db) == 0
    finally:
        api.process.stop()


def test_stripe_too_slow_gives_504_and_no_row(tmp_path: Path, database_url: str, emulator: Emulator, db: Any) -> None:
    env = api_environment(database_url, emulator.url, stripe_timeout_seconds="0.3", stripe_max_network_retries="0")
    api = start_api(tmp_path, free_port(), env)
    try:
        emulator.set_faults(latency_ms=1500)
        response = create(api)
        assert response.status_code == 504
        assert response.headers["retry-after"]
        assert rows(db) == 0
    finally:
        api.process.stop()


def test_stripe_refusing_the_buyers_country_is_a_clear_422(
    tmp_path: Path, database_url: str, emulator: Emulator, db: Any
) -> None:
    env = api_environment(database_url, emulator.url, trusted_proxy_hops="1")
    api = start_api(tmp_path, free_port(), env)
    try:
        with api.client() as client:
            response = client.post(
                SESSIONS,
                json={"walletAddress": WALLET, "sourceAmount": "50"},
                headers={"X-Forwarded-For": "203.0.113.9"},  # TEST-NET-3: a region the emulator does not serve
            )
        assert response.status_code == 422
        body = response.json()
        assert body["type"] == "/problems/stripe-rejected"
        assert body["code"] == "crypto_onramp_unsupported_country"
        assert rows(db) == 0
    finally:
        api.process.stop()


def test_duplicated_and_shuffled_webhooks_end_every_session_fulfilled_once(
    api: PaymentApi, emulator: Emulator, db: Any
) -> None:
    emulator.set_faults(duplicate_rate=1.0, shuffle=True, seed=7)
    created = [create(api, key=str(uuid.uuid4())).json() for _ in range(5)]
    for session in created:
        emulator.advance(session["stripeSessionId"], "fulfillment_complete")

    def all_done() -> bool:
        return all(get(api, s["id"])["status"] == "fulfillment_complete" for s in created)

    wait_until(all_done, timeout=30, what="all sessions fulfilled")
    # Every event is delivered twice; wait until the copies have landed too.
    wait_until(
        lambda: len([d for d in emulator.deliveries() if d.get("delivered")]) >= 30, timeout=30, what="duplicates"
    )
    with db() as session:
        changes = session.scalar(
            select(func.count()).select_from(SessionStatusChange).where(SessionStatusChange.source == "webhook")
        )
        events = session.scalar(select(func.count()).select_from(WebhookEvent))
    # Each session's three events are stored once although each was delivered twice, and at most three
    # transitions per session were applied (fewer when a later snapshot arrived first).
    assert events == 15
    assert 5 <= (changes or 0) <= 15


def test_a_crash_between_the_stripe_call_and_the_commit_heals_after_restart(
    tmp_path: Path, api_port: int, database_url: str, emulator: Emulator, db: Any
) -> None:
    env = api_environment(database_url, emulator.url, crash_points="after_stripe_create")
    crashing = start_api(tmp_path, api_port, env)
    key = str(uuid.uuid4())
    with pytest.raises(httpx.HTTPError):
        create(crashing, key=key)
    wait_until(lambda: not crashing.process.alive(), timeout=10, what="API to die")
    assert crashing.process.popen.returncode == -signal.SIGKILL
    with db() as session:
        stuck = session.scalars(select(OnrampSession)).all()
    assert [s.status for s in stuck] == ["creating"]  # Stripe has it, we have not recorded the answer
    assert len(emulator.sessions()) == 1

    healed_env = api_environment(
        database_url, emulator.url, creation_lease_seconds="0.5", recovery_interval_seconds="0.2"
    )
    restarted = start_api(tmp_path, api_port, healed_env)
    try:
        wait_until(lambda: get(restarted, stuck[0].id)["status"] == "initialized", timeout=15, what="recovery")
        replay = create(restarted, key=key)
        assert replay.status_code == 201
        stripe_sessions = emulator.sessions()
        assert len(stripe_sessions) == 1  # the retry reused Stripe's session through the idempotency key
        assert replay.json()["stripeSessionId"] == stripe_sessions[0]["id"]
        assert replay.json()["id"] == stuck[0].id
        assert rows(db) == 1
    finally:
        restarted.process.stop()


def test_a_crash_before_the_webhook_commit_is_healed_by_stripes_retry(
    tmp_path: Path, api_port: int, database_url: str, emulator: Emulator, db: Any
) -> None:
    normal_env = api_environment(database_url, emulator.url)
    api = start_api(tmp_path, api_port, normal_env)
    session = create(api, key=str(uuid.uuid4())).json()
    api.process.stop()
    crashing = start_api(tmp_path, api_port, {**normal_env, "MUSDPAY_CRASH_POINTS": "webhook_before_commit"})
    emulator.advance(session["stripeSessionId"], "requires_payment")
    wait_until(lambda: not crashing.process.alive(), timeout=15, what="API to die on the webhook")
    assert rows(db, WebhookEvent) == 0  # nothing half-written
    restarted = start_api(tmp_path, api_port, normal_env)
    try:
        wait_until(lambda: get(restarted, session["id"])["status"] == "requires_payment", timeout=30, what="retry")
        assert rows(db, WebhookEvent) == 1
    finally:
        restarted.process.stop()


def test_sigterm_lets_the_request_in_flight_finish(api: PaymentApi, emulator: Emulator, db: Any) -> None:
    emulator.set_faults(latency_ms=1000)
    results: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: results.append(create(api, key=str(uuid.uuid4()))))
    worker.start()

    def in_flight() -> bool:
        with db() as session:
            return session.scalar(select(OnrampSession.status)) == "creating"

    wait_until(in_flight, timeout=10, what="request in flight")
    api.process.signal(signal.SIGTERM)
    worker.join(timeout=30)
    assert results
    assert results[0].status_code == 201
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status names the signal.
    assert api.process.popen.wait(timeout=20) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in api.process.log()
    with db() as session:
        assert session.scalar(select(OnrampSession.status)) == "initialized"
