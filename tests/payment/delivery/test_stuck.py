"""A treasury transfer that is not mined (anvil with automine off) is replaced at a higher fee, same nonce."""

from __future__ import annotations

from typing import Any

import pytest

from payment.delivery.status import DeliveryStatus
from tests.payment.delivery.conftest import DeliveryRig, units


@pytest.fixture
def chain_params() -> dict[str, Any]:
    return {"automine": False}


@pytest.fixture
def delivery_settings() -> dict[str, Any]:
    return {"delivery_mode": "treasury", "treasury_stuck_seconds": 30.0, "treasury_fee_bump_percent": 25}


def deliver(rig: DeliveryRig) -> None:
    rig.run(rig.worker().run_once())


def test_a_stuck_transfer_is_replaced_and_only_one_is_ever_mined(rig: DeliveryRig) -> None:
    session = rig.paid_session("42")
    deliver(rig)
    [first] = rig.attempts(session.id)
    waiting = rig.delivery(session.id)
    assert waiting.status == DeliveryStatus.pending
    assert waiting.reason == "the transaction is not mined yet"
    assert first.broadcast_at is not None

    # Not stuck yet: nothing new is signed.
    rig.clock.advance(10)
    deliver(rig)
    assert len(rig.attempts(session.id)) == 1

    rig.clock.advance(25)
    deliver(rig)
    first_again, replacement = rig.attempts(session.id)
    assert first_again.tx_hash == first.tx_hash
    assert replacement.nonce == first.nonce
    assert replacement.gas_price >= first.gas_price * 125 / 100
    assert rig.delivery(session.id).status == DeliveryStatus.pending

    rig.chain.mine()
    rig.clock.advance(rig.settings.delivery_poll_seconds)
    deliver(rig)

    delivery = rig.delivery(session.id)
    assert delivery.status == DeliveryStatus.verified
    assert delivery.tx_hash == replacement.tx_hash
    assert rig.chain.musd_balance(session.wallet_address) == units("42")
    # Whatever else gets mined later, the first transaction can never be: its nonce is spent.
    rig.chain.mine(3)
    assert len(rig.transfers_to(session.wallet_address)) == 1
    assert rig.chain.w3.eth.get_transaction_receipt(replacement.tx_hash)["status"] == 1
