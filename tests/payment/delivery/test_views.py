"""Deliveries as the API shows them, and the operator routes, with the API's own worker and pool on anvil."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from payment.api import create_app
from payment.auth import audit
from payment.auth.principal import Role
from payment.core.config import Settings
from payment.delivery.status import DeliveryStatus
from tests.payment.conftest import seed_session
from tests.payment.delivery.conftest import DeliveryRig, units
from tests.support.auth import api_key, bearer, wallet_token
from tests.support.waiting import wait_until

SESSIONS = "/api/v1/onramp/sessions"


def api(settings: Settings) -> TestClient:
    return TestClient(create_app(settings.model_copy(update={"delivery_poll_seconds": 0.05})))


@pytest.fixture
def operator(rig: DeliveryRig) -> dict[str, str]:
    return bearer(api_key(rig.factory, Role.operator))


def delivery_of(client: TestClient, session_id: str, headers: dict[str, str]) -> dict[str, Any] | None:
    response = client.get(f"{SESSIONS}/{session_id}", headers=headers)
    assert response.status_code == 200, response.text
    delivery: dict[str, Any] | None = response.json()["delivery"]
    return delivery


def test_a_verified_delivery_in_the_session_and_a_re_verification_audited(
    rig: DeliveryRig, operator: dict[str, str]
) -> None:
    wallet = "0x52908400098527886E0F7030069857D2E4169EE7"
    tx = rig.chain.transfer_musd(wallet, units("98.50"))
    session = rig.paid_session("98.50", wallet=wallet, transaction_id=tx)
    unpaid = seed_session(rig.factory, status="requires_payment")

    with api(rig.settings) as client:
        wait_until(
            lambda: (delivery_of(client, session.id, operator) or {}).get("status") == "verified",
            timeout=15,
            what="the API's worker to verify the delivery",
        )
        delivery = delivery_of(client, session.id, operator)
        assert delivery == {
            "mode": "onramp",
            "status": "verified",
            "txHash": tx,
            "confirmations": 1,
            "expectedAmount": None,
            "deliveredAmount": "98.5",
            "verifiedAt": delivery["verifiedAt"] if delivery else None,
            "reason": None,
        }
        assert delivery_of(client, unpaid.id, operator) is None
        listed = client.get(SESSIONS, headers=operator).json()["data"]
        assert {row["id"]: row["delivery"] is not None for row in listed} == {session.id: True, unpaid.id: False}

        again = client.post(f"{SESSIONS}/{session.id}/delivery/verify", headers=operator)
        assert again.status_code == 202, again.text
        assert again.json()["status"] == "verified"

        not_fulfilled = client.post(f"{SESSIONS}/{unpaid.id}/delivery/verify", headers=operator)
        assert not_fulfilled.status_code == 409
        assert not_fulfilled.headers["content-type"] == "application/problem+json"
        assert not_fulfilled.json()["type"].endswith("/problems/no-delivery")
        missing = client.post(f"{SESSIONS}/no-such-session/delivery/verify", headers=operator)
        assert missing.status_code == 404
        onramp_retry = client.post(f"{SESSIONS}/{session.id}/delivery/retry", headers=operator)
        assert onramp_retry.status_code == 409
        assert onramp_retry.json()["type"].endswith("/problems/delivery-not-retryable")

        # Wallets and anonymous callers may read their own session, not act on deliveries.
        owner = bearer(wallet_token(rig.settings, wallet))
        assert delivery_of(client, session.id, owner) is not None
        assert client.post(f"{SESSIONS}/{session.id}/delivery/verify", headers=owner).status_code == 403
        assert client.post(f"{SESSIONS}/{session.id}/delivery/verify").status_code == 401

    [event] = audit.list_events(factory=rig.factory, action="delivery.verify")
    assert event.target == session.id
    assert event.actor.startswith("api_key:")


@pytest.mark.parametrize(
    "delivery_settings", [{"delivery_mode": "treasury", "treasury_max_transfer": "50"}], indirect=False
)
def test_a_held_treasury_delivery_shows_why_and_can_be_retried(rig: DeliveryRig, operator: dict[str, str]) -> None:
    session = rig.paid_session("98.50")
    with api(rig.settings) as client:
        wait_until(
            lambda: (delivery_of(client, session.id, operator) or {}).get("status") == "held",
            timeout=15,
            what="the delivery to be held by the per-transfer cap",
        )
        held = delivery_of(client, session.id, operator)
        assert held is not None
        assert held["reason"] == "98.50 MUSD is over the per-transfer cap of 50 MUSD"
        retried = client.post(f"{SESSIONS}/{session.id}/delivery/retry", headers=operator)
        assert retried.status_code == 202, retried.text
        assert retried.json()["status"] == DeliveryStatus.pending
        assert retried.json()["reason"] == "retry requested by an operator"
        # The cap still applies: the worker holds it again, and nothing was sent.
        wait_until(
            lambda: (delivery_of(client, session.id, operator) or {}).get("status") == "held",
            timeout=15,
            what="the worker to hold it again",
        )
    assert rig.chain.musd_balance(session.wallet_address) == 0
    assert [e.target for e in audit.list_events(factory=rig.factory, action="delivery.retry")] == [session.id]
