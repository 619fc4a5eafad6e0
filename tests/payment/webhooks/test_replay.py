"""Operators replay a recorded Stripe event; the outbox makes a delivery due with the paid status change."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from payment.api import create_app
from payment.auth import audit
from payment.auth.principal import Role
from payment.core.config import Settings
from payment.delivery.models import Delivery
from payment.onramp.models import OnrampSession
from tests.payment.conftest import event_payload, onramp_object, seed_session, sign
from tests.support.auth import api_key, bearer, wallet_token

URL = "/api/v1/webhooks/stripe"


@pytest.fixture
def client(settings: Settings, factory: sessionmaker[Session]) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"delivery_worker_enabled": False}))) as client:
        yield client


def deliveries(factory: sessionmaker[Session]) -> list[Delivery]:
    with factory() as db:
        return list(db.scalars(select(Delivery)).all())


def test_the_paid_status_and_its_delivery_commit_together_once(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    row = seed_session(factory, status="fulfillment_processing")
    obj = onramp_object(row, "fulfillment_complete", transaction_id="0x" + "cd" * 32, destination_amount="98.49")
    first, again = event_payload(obj), event_payload(obj)  # Stripe's retry of the update: another event id
    for payload in (first, first, again):
        assert client.post(URL, content=payload, headers={"Stripe-Signature": sign(payload)}).status_code == 200
    [delivery] = deliveries(factory)
    assert (delivery.session_id, delivery.mode, delivery.status) == (row.id, "onramp", "pending")
    assert delivery.wallet_address == row.wallet_address


def test_an_operator_replays_an_event_that_arrived_before_its_session(
    client: TestClient, factory: sessionmaker[Session], settings: Settings
) -> None:
    # Stripe's event names a session we do not have (say, restored from a backup after the event came).
    ghost = seed_session(factory)
    obj = onramp_object(ghost, "requires_payment")
    obj["id"], obj["metadata"] = "cos_restored_later", {}
    payload = event_payload(obj, event_id="evt_replay_me")
    ack = client.post(URL, content=payload, headers={"Stripe-Signature": sign(payload)}).json()
    assert ack["outcome"] == "unknown_session"
    with factory() as db, db.begin():
        restored = db.get(OnrampSession, ghost.id)
        assert restored is not None
        restored.stripe_session_id = "cos_restored_later"

    operator = bearer(api_key(factory, Role.operator))
    replayed = client.post("/api/v1/webhooks/events/evt_replay_me/replay", headers=operator)

    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == {"received": True, "eventId": "evt_replay_me", "outcome": "processed"}
    with factory() as db:
        assert db.get(OnrampSession, ghost.id).status == "requires_payment"  # type: ignore[union-attr]
    [event] = audit.list_events(factory=factory, action="webhook.replay")
    assert event.target == "evt_replay_me"
    assert event.actor.startswith("api_key:")
    # Replaying again changes nothing (the session is already there), and is audited again.
    again = client.post("/api/v1/webhooks/events/evt_replay_me/replay", headers=operator).json()
    assert again["outcome"] == "out_of_order"
    assert len(audit.list_events(factory=factory, action="webhook.replay")) == 2


def test_replay_is_for_operators_and_names_unknown_events(
    client: TestClient, factory: sessionmaker[Session], settings: Settings
) -> None:
    path = "/api/v1/webhooks/events/evt_nope/replay"
    assert client.post(path).status_code == 401
    wallet = bearer(wallet_token(settings, "0x52908400098527886E0F7030069857D2E4169EE7"))
    assert client.post(path, headers=wallet).status_code == 403
    missing = client.post(path, headers=bearer(api_key(factory, Role.admin)))
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    with factory() as db:
        assert db.scalar(select(func.count()).select_from(OnrampSession)) == 0
