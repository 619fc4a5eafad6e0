"""ChainFulfiller behind the real Stripe emulator: a session driven to fulfillment_complete pays the buyer
real MUSD on the local chain, and the session carries that transfer's hash."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hexbytes import HexBytes
from web3.exceptions import TimeExhausted

from sandbox.chain.fulfillment import ChainFulfiller
from sandbox.chain.local import LocalChain, running_chain
from sandbox.chain.musd import to_units
from sandbox.stripe.config import EmulatorConfig
from sandbox.stripe.server import running_emulator
from tests.sandbox.chain.support import require_anvil

pytestmark = pytest.mark.integration

API_KEY = "sk_test_chain_fulfillment"
BUYER = "0x52908400098527886E0F7030069857D2E4169EE7"


@pytest.fixture
def stripe(chain: LocalChain) -> Iterator[httpx.Client]:
    with (
        running_emulator(EmulatorConfig(port=0), fulfiller=ChainFulfiller(chain)) as emulator,
        httpx.Client(base_url=emulator.url, timeout=30, trust_env=False) as client,
    ):
        yield client


MUSD_ON_MEZO = {
    "wallet_addresses[mezo]": BUYER,
    "source_amount": "100.00",
    "destination_currency": "musd",
    "destination_network": "mezo",
}


def create_session(stripe: httpx.Client, form: dict[str, str] = MUSD_ON_MEZO) -> dict[str, Any]:
    response = stripe.post("/v1/crypto/onramp_sessions", data=form, headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()
    return session


def advance(stripe: httpx.Client, session_id: str, status: str) -> httpx.Response:
    return stripe.post(f"/_sandbox/onramp_sessions/{session_id}/advance", json={"status": status})


def test_fulfillment_complete_transfers_the_destination_amount_on_chain(
    chain: LocalChain, stripe: httpx.Client
) -> None:
    session = create_session(stripe)
    response = advance(stripe, session["id"], "fulfillment_complete")
    assert response.status_code == 200, response.text
    details = response.json()["transaction_details"]
    amount = to_units(details["destination_amount"])
    assert 0 < amount < 100 * 10**18  # 100 USD less fees
    receipt = chain.w3.eth.get_transaction_receipt(details["transaction_id"])
    assert receipt["status"] == 1
    assert chain.musd.transfer_events(receipt) == [{"from": chain.treasury_address, "to": BUYER, "value": amount}]
    assert chain.musd_balance(BUYER) == amount
    again = stripe.get(f"/v1/crypto/onramp_sessions/{session['id']}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert again.json()["transaction_details"]["transaction_id"] == details["transaction_id"]


def test_a_session_for_another_currency_is_not_paid_in_musd(chain: LocalChain, stripe: httpx.Client) -> None:
    usdc_on_ethereum = {
        "wallet_addresses[ethereum]": BUYER,
        "source_amount": "100.00",
        "destination_currency": "usdc",
        "destination_network": "ethereum",
    }
    session = create_session(stripe, usdc_on_ethereum)
    response = advance(stripe, session["id"], "fulfillment_complete")
    assert response.status_code == 502, response.text
    assert "delivers only musd" in response.text
    assert chain.musd_balance(BUYER) == 0


def test_a_fulfillment_retried_after_a_slow_receipt_does_not_pay_twice() -> None:
    require_anvil()
    with running_chain(automine=False) as chain:
        # A handle that believes the chain automines, so nothing mines the transfer: the receipt times out.
        unmined = LocalChain.attach({**chain.info(), "automine": True})
        fulfiller = ChainFulfiller(unmined, receipt_timeout=0.3)
        session = {
            "id": "cos_retried",
            "transaction_details": {
                "wallet_address": BUYER,
                "destination_amount": "12.5",
                "destination_currency": "musd",
            },
        }
        with pytest.raises(TimeExhausted):
            fulfiller.fulfill(session)
        chain.mine()  # the first transfer lands after all
        tx_hash = fulfiller.fulfill(session)  # the emulator's retry waits for it instead of sending another
        assert chain.w3.eth.get_transaction_receipt(HexBytes(tx_hash))["status"] == 1
        assert chain.musd_balance(BUYER) == 12_500_000_000_000_000_000
        assert chain.w3.eth.get_transaction_count(chain.treasury_address) == 1


@pytest.mark.parametrize(
    "details",
    [
        {"wallet_address": None, "destination_amount": "1", "destination_currency": "musd"},
        {"wallet_address": "0x1234", "destination_amount": "1", "destination_currency": "musd"},
        {"wallet_address": BUYER, "destination_amount": "0", "destination_currency": "musd"},
    ],
)
def test_a_session_without_a_wallet_or_amount_is_refused(chain: LocalChain, details: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"wallet_address|amount"):
        ChainFulfiller(chain).fulfill({"id": "cos_bad", "transaction_details": details})
    assert chain.musd_balance(chain.treasury_address) == 1_000_000 * 10**18


def test_without_automine_the_fulfiller_mines_its_transfer() -> None:
    require_anvil()
    with running_chain(automine=False) as chain:
        session = {
            "id": "cos_manual",
            "transaction_details": {"wallet_address": BUYER, "destination_amount": "1", "destination_currency": "musd"},
        }
        tx_hash = ChainFulfiller(chain, receipt_timeout=10).fulfill(session)
        assert chain.w3.eth.get_transaction_receipt(HexBytes(tx_hash))["status"] == 1
        assert chain.musd_balance(BUYER) == 10**18
