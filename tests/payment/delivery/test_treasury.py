"""Treasury mode: we send the MUSD from our own key, exactly once, within caps. Real anvil throughout."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from payment.core.config import SettingsError
from payment.delivery import service, store
from payment.delivery.models import Delivery
from payment.delivery.status import DeliveryStatus
from tests.payment.conftest import make_settings
from tests.payment.delivery.conftest import DeliveryRig, new_wallet, units
from tests.support.auth import TEST_ACTOR

pytestmark = pytest.mark.parametrize("delivery_settings", [{"delivery_mode": "treasury"}], indirect=False)


def deliver(rig: DeliveryRig, **overrides: Any) -> None:
    """Worker rounds until no delivery is left pending (none of these tests ends pending): one round, usually.
    On a loaded machine the first round can end pending, e.g. looking for a receipt before anvil has mined the
    transfer it just accepted, or an RPC call timing out; in service the worker looks again on a later round,
    and here the rig's clock brings that round forward."""
    worker = rig.worker(**overrides)
    rig.run(worker.run_once())
    deadline = time.monotonic() + 30
    while _pending(rig):
        assert time.monotonic() < deadline, "a delivery was still pending after 30 s of worker rounds"
        rig.clock.advance(rig.settings.delivery_retry_max_seconds)
        rig.run(worker.run_once())


def _pending(rig: DeliveryRig) -> bool:
    with rig.factory() as db:
        query = select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.pending.value)
        return bool(db.scalar(query))


def test_a_paid_session_is_paid_from_the_treasury_once(rig: DeliveryRig) -> None:
    treasury_before = rig.chain.musd_balance(rig.chain.treasury_address)
    session = rig.paid_session("98.50")

    deliver(rig)

    delivery = rig.delivery(session.id)
    assert delivery.status == DeliveryStatus.verified
    assert delivery.mode == "treasury"
    assert delivery.from_address == rig.chain.treasury_address
    assert str(delivery.expected_amount) == "98.50"
    assert str(delivery.delivered_amount) == "98.5"
    [attempt] = rig.attempts(session.id)
    assert delivery.tx_hash == attempt.tx_hash
    assert rig.chain.musd_balance(session.wallet_address) == units("98.50")
    assert rig.chain.musd_balance(rig.chain.treasury_address) == treasury_before - units("98.50")
    assert rig.metric("musdpay_delivery_total", mode="treasury", outcome="verified") == 1

    for _ in range(3):  # later rounds, however many, send nothing more
        rig.clock.advance(600)
        deliver(rig)
    assert len(rig.transfers_to(session.wallet_address)) == 1
    assert rig.attempt_count() == 1


def test_several_deliveries_in_one_round_get_consecutive_nonces(rig: DeliveryRig) -> None:
    sessions = [rig.paid_session(f"{10 + i}.25") for i in range(5)]
    deliver(rig)
    deliveries = [rig.delivery(s.id) for s in sessions]
    assert {d.status for d in deliveries} == {DeliveryStatus.verified}
    nonces = sorted(d.nonce for d in deliveries if d.nonce is not None)
    assert nonces == list(range(nonces[0], nonces[0] + 5))
    for s in sessions:
        assert rig.chain.musd_balance(s.wallet_address) == units(str(s.destination_amount))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"treasury_max_transfer": Decimal("50")}, "98.50 MUSD is over the per-transfer cap of 50 MUSD"),
        ({"treasury_min_musd": Decimal("999950")}, "would leave less than the minimum of 999950 MUSD"),
        ({"treasury_min_btc": Decimal("1000")}, "under the minimum of 1000 BTC"),
    ],
)
def test_caps_and_minimum_balances_hold_the_delivery_visibly(
    rig: DeliveryRig, overrides: dict[str, Any], reason: str
) -> None:
    session = rig.paid_session("98.50")

    deliver(rig, **overrides)

    delivery = rig.delivery(session.id)
    assert delivery.status == DeliveryStatus.held
    assert reason in (delivery.reason or "")
    assert delivery.nonce is None
    assert rig.attempt_count() == 0
    assert rig.chain.musd_balance(session.wallet_address) == 0
    assert rig.metric("musdpay_delivery_total", mode="treasury", outcome="held") == 1
    # Once the limit allows it (here: the settings change), the next due round sends it.
    rig.clock.advance(rig.settings.delivery_retry_max_seconds)
    deliver(rig)
    assert rig.delivery(session.id).status == DeliveryStatus.verified
    assert rig.chain.musd_balance(session.wallet_address) == units("98.50")


def test_the_daily_cap_counts_what_was_sent_today(rig: DeliveryRig) -> None:
    first, second = rig.paid_session("60"), rig.paid_session("60")
    deliver(rig, treasury_daily_cap=Decimal("100"))
    statuses = {rig.delivery(first.id).status, rig.delivery(second.id).status}
    assert statuses == {DeliveryStatus.verified, DeliveryStatus.held}
    held = first if rig.delivery(first.id).status == DeliveryStatus.held else second
    assert "daily cap of 100 MUSD is reached (60 MUSD sent today)" in (rig.delivery(held.id).reason or "")
    assert rig.chain.musd_balance(held.wallet_address) == 0


def test_a_treasury_without_gas_money_holds_then_sends_once_topped_up(rig: DeliveryRig) -> None:
    rig.chain.set_btc_balance(rig.chain.treasury_address, 10**12)  # 0.000001 BTC: under the minimum
    session = rig.paid_session("5")
    deliver(rig)
    assert rig.delivery(session.id).status == DeliveryStatus.held
    rig.chain.set_btc_balance(rig.chain.treasury_address, 10 * 10**18)
    rig.clock.advance(rig.settings.delivery_retry_max_seconds)
    deliver(rig)
    assert rig.delivery(session.id).status == DeliveryStatus.verified


def test_a_nonce_reserved_but_never_signed_is_filled_before_later_ones(rig: DeliveryRig) -> None:
    """A crash after reserving a nonce leaves a gap: later transfers queue behind it until it is filled."""
    first = rig.paid_session("11")
    chain_nonce = rig.chain.w3.eth.get_transaction_count(rig.chain.treasury_address, "pending")
    gap = store.reserve_nonce(
        rig.factory,
        session_id=first.id,
        address=rig.chain.treasury_address,
        chain_pending_nonce=chain_nonce,
        amount=Decimal("11"),
        now=rig.clock(),
    )
    assert gap == chain_nonce
    second = rig.paid_session("22")

    deliver(rig)

    one, two = rig.delivery(first.id), rig.delivery(second.id)
    assert (one.nonce, two.nonce) == (gap, gap + 1)
    assert one.status == two.status == DeliveryStatus.verified
    assert rig.chain.musd_balance(first.wallet_address) == units("11")
    assert rig.chain.musd_balance(second.wallet_address) == units("22")


def test_a_key_used_elsewhere_moves_the_nonce_forward(rig: DeliveryRig) -> None:
    rig.paid_session("1")
    deliver(rig)
    # Someone sends from the treasury key outside musdpay: our stored next nonce is now behind the chain.
    rig.chain.transfer_musd(new_wallet(), units("1"))
    session = rig.paid_session("2")
    deliver(rig)
    assert rig.delivery(session.id).status == DeliveryStatus.verified
    assert rig.chain.musd_balance(session.wallet_address) == units("2")


def test_operator_verify_of_a_verified_delivery_never_resends(rig: DeliveryRig) -> None:
    session = rig.paid_session("3")
    deliver(rig)
    reopened = service.reopen_delivery(
        factory=rig.factory,
        settings=rig.settings,
        session_id=session.id,
        action=service.Action.verify,
        actor=TEST_ACTOR,
        now=rig.clock(),
    )
    assert reopened.status == DeliveryStatus.verified
    deliver(rig)
    assert rig.delivery(session.id).status == DeliveryStatus.verified
    assert len(rig.transfers_to(session.wallet_address)) == 1


def test_a_reserved_nonce_spent_by_someone_else_is_a_mismatch_for_a_person(rig: DeliveryRig) -> None:
    session = rig.paid_session("7")
    chain_nonce = rig.chain.w3.eth.get_transaction_count(rig.chain.treasury_address, "pending")
    store.reserve_nonce(
        rig.factory,
        session_id=session.id,
        address=rig.chain.treasury_address,
        chain_pending_nonce=chain_nonce,
        amount=Decimal("7"),
        now=rig.clock(),
    )
    # The treasury key is used outside musdpay before our transfer goes out: it takes our nonce.
    rig.chain.transfer_musd(new_wallet(), units("1"))

    deliver(rig)

    delivery = rig.delivery(session.id)
    assert delivery.status == DeliveryStatus.mismatch
    assert delivery.reason == f"treasury nonce {chain_nonce} was used by a transaction not signed for this delivery"
    assert rig.chain.musd_balance(session.wallet_address) == 0
    assert rig.metric("musdpay_delivery_total", mode="treasury", outcome="mismatch") == 1


def test_treasury_mode_without_a_key_refuses_to_start_the_worker(rig: DeliveryRig) -> None:
    with pytest.raises(SettingsError, match="MUSDPAY_TREASURY_KEY"):
        rig.worker(treasury_key=None)
    # Tools that never send (migrations, API keys) still accept the settings.
    assert make_settings(rig.settings.database_url, delivery_mode="treasury").treasury_key is None
