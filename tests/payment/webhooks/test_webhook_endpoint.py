"""The Stripe webhook route, in process, with payloads signed as Stripe signs them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from payment.api import create_app
from payment.core.config import Settings
from payment.onramp.models import OnrampSession, SessionStatusChange
from payment.webhooks.models import WebhookEvent
from tests.payment.conftest import WEBHOOK_SECRET, event_payload, make_settings, onramp_object, seed_session, sign

URL = "/api/v1/webhooks/stripe"


@pytest.fixture
def client(settings: Settings, factory: sessionmaker[Session]) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def post(client: TestClient, payload: bytes, signature: str | None) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    response = client.post(URL, content=payload, headers=headers)
    body: dict[str, object] = response.json()
    body["_status"] = response.status_code
    body["_content_type"] = response.headers["content-type"]
    return body


def count(factory: sessionmaker[Session], model: type[object]) -> int:
    with factory() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_a_signed_event_moves_the_session_and_stores_the_transaction(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    row = seed_session(factory)
    tx = "0x" + "ab" * 32
    obj = onramp_object(
        row,
        "fulfillment_complete",
        transaction_id=tx,
        destination_amount="98.49",
        network_fee_amount="0.01",
        transaction_fee_amount="1.50",
    )
    payload = event_payload(obj)
    body = post(client, payload, sign(payload))
    assert body["_status"] == 200
    assert body["outcome"] == "processed"
    with factory() as db:
        stored = db.get(OnrampSession, row.id)
        assert stored is not None
        assert stored.status == "fulfillment_complete"
        assert stored.transaction_id == tx
        assert str(stored.destination_amount) == "98.49"
        assert str(stored.transaction_fee_amount) == "1.50"
        changes = db.scalars(select(SessionStatusChange).where(SessionStatusChange.session_id == row.id)).all()
        assert [(c.from_status, c.to_status, c.source) for c in changes] == [
            ("initialized", "fulfillment_complete", "webhook")
        ]
        event = db.get(WebhookEvent, json.loads(payload)["id"])
        assert event is not None
        assert event.outcome == "processed"
        assert event.session_id == row.id
        assert event.processed_at is not None


def test_a_duplicate_event_is_acknowledged_and_not_processed_again(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    row = seed_session(factory)
    payload = event_payload(onramp_object(row, "requires_payment"))
    first = post(client, payload, sign(payload))
    second = post(client, payload, sign(payload))
    assert (first["_status"], first["outcome"]) == (200, "processed")
    assert (second["_status"], second["outcome"]) == (200, "duplicate")
    assert count(factory, WebhookEvent) == 1
    assert count(factory, SessionStatusChange) == 1


def test_an_older_event_arriving_late_is_recorded_but_not_applied(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    row = seed_session(factory)
    now = int(time.time())
    newer = event_payload(onramp_object(row, "fulfillment_complete", transaction_id="0x" + "cd" * 32), created=now)
    older = event_payload(onramp_object(row, "requires_payment"), created=now - 5)
    assert post(client, newer, sign(newer))["outcome"] == "processed"
    late = post(client, older, sign(older))
    assert (late["_status"], late["outcome"]) == (200, "out_of_order")
    with factory() as db:
        stored = db.get(OnrampSession, row.id)
        assert stored is not None
        assert stored.status == "fulfillment_complete"
        assert db.get(WebhookEvent, json.loads(older)["id"]) is not None


def test_a_webhook_that_outruns_the_create_response_finds_the_row_by_metadata(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    row = seed_session(factory, status="creating", stripe_session_id=None, client_secret=None)
    obj = onramp_object(row, "requires_payment")
    obj["id"] = "cos_outran_create_response"
    payload = event_payload(obj)
    assert post(client, payload, sign(payload))["outcome"] == "processed"
    with factory() as db:
        stored = db.get(OnrampSession, row.id)
        assert stored is not None
        assert (stored.status, stored.stripe_session_id) == ("requires_payment", "cos_outran_create_response")


@pytest.mark.parametrize(
    ("case", "expected_detail"),
    [
        ("wrong_secret", "No valid signature"),
        ("stale", "tolerance"),
        ("missing", "missing"),
        ("tampered", "No valid signature"),
        ("garbage", "No valid signature"),
    ],
)
def test_bad_signatures_get_a_400_problem_and_write_nothing(
    client: TestClient, factory: sessionmaker[Session], case: str, expected_detail: str
) -> None:
    row = seed_session(factory)
    payload = event_payload(onramp_object(row, "fulfillment_complete"))
    signature: str | None = {
        "wrong_secret": sign(payload, "whsec_someone_else"),
        "stale": sign(payload, timestamp=int(time.time()) - 301),
        "missing": None,
        "tampered": sign(payload.replace(b"fulfillment_complete", b"requires_payment")),
        "garbage": "t=abc,v1=zz",
    }[case]
    body = post(client, payload, signature)
    assert body["_status"] == 400
    assert body["_content_type"] == "application/problem+json"
    assert body["type"] == "/problems/invalid-signature"
    assert expected_detail in str(body["detail"])
    assert count(factory, WebhookEvent) == 0
    with factory() as db:
        stored = db.get(OnrampSession, row.id)
        assert stored is not None
        assert stored.status == "initialized"


def test_any_of_several_secrets_is_accepted_during_rotation(database_url: str, engine: object) -> None:
    settings = make_settings(database_url, stripe_webhook_secrets=["whsec_new_one_123", WEBHOOK_SECRET])
    with TestClient(create_app(settings)) as client:
        payload = event_payload({"id": "cos_unknown", "object": "crypto.onramp_session", "status": "initialized"})
        assert post(client, payload, sign(payload, "whsec_new_one_123"))["_status"] == 200
        other = event_payload({"id": "cos_unknown", "object": "crypto.onramp_session", "status": "initialized"})
        assert post(client, other, sign(other, WEBHOOK_SECRET))["_status"] == 200
        third = event_payload({"id": "cos_unknown", "object": "crypto.onramp_session", "status": "initialized"})
        assert post(client, third, sign(third, "whsec_retired_one"))["_status"] == 400


def test_unknown_event_types_and_sessions_are_recorded_with_their_outcome(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    other = json.loads(event_payload({"id": "pi_123", "object": "payment_intent"}))
    other["type"] = "payment_intent.succeeded"
    payload = json.dumps(other).encode()
    assert post(client, payload, sign(payload))["outcome"] == "ignored"
    row = seed_session(factory)
    obj = onramp_object(row, "requires_payment")
    obj["id"] = "cos_not_ours"
    obj["metadata"] = None
    stray = event_payload(obj)
    assert post(client, stray, sign(stray))["outcome"] == "unknown_session"
    with factory() as db:
        outcomes = sorted(db.scalars(select(WebhookEvent.outcome)).all())
    assert outcomes == ["ignored", "unknown_session"]


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", b'{"id": "evt_1"}', b'{"id": "evt_1", "type": "x", "created": "yesterday", "data": {}}'],
)
def test_signed_but_malformed_events_are_refused_and_write_nothing(
    client: TestClient, factory: sessionmaker[Session], payload: bytes
) -> None:
    body = post(client, payload, sign(payload))
    assert body["_status"] in (400, 422)
    assert body["_content_type"] == "application/problem+json"
    assert count(factory, WebhookEvent) == 0
