"""Onramp mode: Stripe delivers, we verify on a real chain. Each case is a real transaction on anvil."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from payment.delivery.status import DeliveryStatus
from payment.delivery.store import FAR_FUTURE
from sandbox.chain.artifact import musd_artifact
from sandbox.chain.musd import MusdClient
from tests.payment.delivery.conftest import DeliveryRig, new_wallet, units


def verify(rig: DeliveryRig, **overrides: Any) -> None:
    rig.run(rig.worker(**overrides).run_once())


def test_a_correct_transfer_is_verified_with_its_amount_and_counted(rig: DeliveryRig) -> None:
    wallet = new_wallet()
    tx = rig.chain.transfer_musd(wallet, units("98.50"))
    session = rig.paid_session("98.50", wallet=wallet, transaction_id=tx)

    verify(rig)

    delivery = rig.delivery(session.id)
    assert delivery.status == DeliveryStatus.verified
    assert delivery.mode == "onramp"
    assert delivery.tx_hash == tx
    assert str(delivery.delivered_amount) == "98.5"
    assert delivery.confirmations == 1
    assert delivery.verified_at is not None
    assert delivery.reason is None
    assert rig.metric("musdpay_delivery_total", mode="onramp", outcome="verified") == 1
    assert rig.metric("musdpay_delivery_duration_seconds_count", mode="onramp") == 1
    # Settled: later rounds leave it alone.
    rig.clock.advance(3600)
    verify(rig)
    assert rig.delivery(session.id).checks == 1


def test_more_than_expected_is_verified(rig: DeliveryRig) -> None:
    wallet = new_wallet()
    tx = rig.chain.transfer_musd(wallet, units("100"))
    session = rig.paid_session("98.50", wallet=wallet, transaction_id=tx)
    verify(rig)
    assert rig.delivery(session.id).status == DeliveryStatus.verified


def test_a_transfer_to_another_wallet_is_a_mismatch(rig: DeliveryRig) -> None:
    stranger = new_wallet()
    tx = rig.chain.transfer_musd(stranger, units("98.50"))
    session = rig.paid_session("98.50", transaction_id=tx)

    verify(rig)

    delivery = rig.delivery(session.id)
    assert delivery.status == DeliveryStatus.mismatch
    assert "not to the session's wallet" in (delivery.reason or "")
    assert stranger.lower() in (delivery.reason or "")
    assert rig.metric("musdpay_delivery_total", mode="onramp", outcome="mismatch") == 1


def test_a_short_transfer_is_a_mismatch_naming_both_amounts(rig: DeliveryRig) -> None:
    wallet = new_wallet()
    tx = rig.chain.transfer_musd(wallet, units("98.49"))
    session = rig.paid_session("98.50", wallet=wallet, transaction_id=tx)

    verify(rig)

    delivery = rig.delivery(session.id)
    assert delivery.status == DeliveryStatus.mismatch
    assert delivery.reason == "short delivery: 98.49 MUSD sent, 98.5 MUSD expected"
    assert str(delivery.delivered_amount) == "98.49"


def test_a_reverted_transaction_failed(rig: DeliveryRig) -> None:
    wallet = new_wallet()
    broke = Account.create()
    rig.chain.set_btc_balance(broke.address, 10**18)
    # An account without MUSD: the token reverts the transfer (sent with a fixed gas limit, so it is mined).
    tx = rig.chain.musd.transfer(wallet, units("98.50"), key=broke.key.to_0x_hex(), wait=False)
    receipt = rig.chain.w3.eth.wait_for_transaction_receipt(tx, timeout=10)
    assert receipt["status"] == 0
    session = rig.paid_session("98.50", wallet=wallet, transaction_id=tx)

    verify(rig)

    delivery = rig.delivery(session.id)
    assert delivery.status == DeliveryStatus.failed
    assert delivery.reason == "the transaction reverted"
    assert delivery.block_number == receipt["blockNumber"]


def test_another_token_paid_to_the_wallet_is_a_mismatch(rig: DeliveryRig) -> None:
    chain = rig.chain
    deploy = chain.sender.send(chain.deployer_key, to=None, data=musd_artifact().bytecode, gas=3_000_000)
    fake = MusdClient(chain.sender, chain.w3.eth.wait_for_transaction_receipt(deploy)["contractAddress"])
    wallet = new_wallet()
    tx = fake.mint(wallet, units("98.50"), key=chain.deployer_key)
    session = rig.paid_session("98.50", wallet=wallet, transaction_id=tx)

    verify(rig)

    delivery = rig.delivery(session.id)
    assert delivery.status == DeliveryStatus.mismatch
    assert fake.address.lower() in (delivery.reason or "")
    assert "another token" in (delivery.reason or "")


def test_an_unknown_hash_is_not_found_rechecked_with_backoff_then_given_up_at_the_deadline(rig: DeliveryRig) -> None:
    session = rig.paid_session("98.50", transaction_id="0x" + "ab" * 32)

    verify(rig)
    first = rig.delivery(session.id)
    assert first.status == DeliveryStatus.not_found
    assert first.reason == "no transaction with this hash on the chain"
    # Not due again before its backoff; then checked again, with a longer backoff.
    verify(rig)
    assert rig.delivery(session.id).checks == 1
    rig.clock.advance(1.01)
    verify(rig)
    second = rig.delivery(session.id)
    assert second.checks == 2
    assert (second.next_check_at - rig.clock()).total_seconds() == pytest.approx(2.0, abs=0.01)
    assert rig.metric("musdpay_delivery_total", mode="onramp", outcome="not_found") == 0  # not settled yet

    rig.clock.advance(rig.settings.delivery_deadline_seconds)
    verify(rig)
    final = rig.delivery(session.id)
    assert final.status == DeliveryStatus.not_found
    assert final.reason == "deadline passed: no transaction with this hash on the chain"
    assert final.next_check_at == FAR_FUTURE
    assert rig.metric("musdpay_delivery_total", mode="onramp", outcome="not_found") == 1


def test_waits_for_the_configured_confirmations(rig: DeliveryRig) -> None:
    wallet = new_wallet()
    tx = rig.chain.transfer_musd(wallet, units("10"))
    session = rig.paid_session("10", wallet=wallet, transaction_id=tx)

    verify(rig, delivery_confirmations=3)
    waiting = rig.delivery(session.id)
    assert waiting.status == DeliveryStatus.pending
    assert waiting.reason == "1 of 3 confirmations"
    assert waiting.confirmations == 1

    rig.chain.mine(2)
    rig.clock.advance(rig.settings.delivery_poll_seconds)
    verify(rig, delivery_confirmations=3)
    done = rig.delivery(session.id)
    assert done.status == DeliveryStatus.verified
    assert done.confirmations == 3


def test_waits_for_stripe_to_report_the_transaction(rig: DeliveryRig) -> None:
    session = rig.paid_session("10", transaction_id=None)
    verify(rig)
    delivery = rig.delivery(session.id)
    assert delivery.status == DeliveryStatus.pending
    assert delivery.reason == "Stripe has not reported the transaction id yet"


def test_a_wallet_given_in_lower_case_matches_its_checksummed_transfer(rig: DeliveryRig) -> None:
    wallet = new_wallet()
    tx = rig.chain.transfer_musd(wallet, units("5"))
    session = rig.paid_session("5", wallet=Web3.to_checksum_address(wallet), transaction_id=tx)
    verify(rig)
    assert rig.delivery(session.id).status == DeliveryStatus.verified


def test_a_chain_outage_decides_nothing_and_says_so(rig: DeliveryRig) -> None:
    wallet = new_wallet()
    tx = rig.chain.transfer_musd(wallet, units("10"))
    session = rig.paid_session("10", wallet=wallet, transaction_id=tx)
    rig.chain.stop()  # every provider (the only one) is now unreachable

    verify(rig)

    delivery = rig.delivery(session.id)
    assert delivery.status == DeliveryStatus.pending
    assert (delivery.reason or "").startswith("chain unavailable: ")
    assert delivery.next_check_at > rig.clock()
    assert rig.metric("musdpay_delivery_total", mode="onramp", outcome="verified") == 0
