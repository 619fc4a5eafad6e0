"""The issue's "done when", over real processes: a paid session ends with MUSD in the buyer's wallet on the
local chain, verified by the service, in either mode, with the primary RPC provider failing all along.

anvil <- two RPC fault proxies ("spectrum", failing; "public") <- the API (own process, its delivery worker);
the Stripe emulator (own process) pays buyers on the chain itself in onramp mode, as Stripe would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from sandbox.chain.local import LocalChain, running_chain
from sandbox.chain.musd import to_units
from sandbox.rpcproxy.server import RunningProxy, running_proxy
from tests.sandbox.chain.support import require_anvil
from tests.support.services import free_port
from tests.support.stack import api_environment, running_emulator, start_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SESSIONS = "/api/v1/onramp/sessions"


@pytest.fixture
def chain() -> Iterator[LocalChain]:
    require_anvil()
    with running_chain() as chain:
        yield chain


@pytest.fixture
def proxies(chain: LocalChain) -> Iterator[tuple[RunningProxy, RunningProxy]]:
    with (
        running_proxy(chain.rpc_url, name="spectrum") as spectrum,
        running_proxy(chain.rpc_url, name="public") as public,
    ):
        # The primary answers every call with HTTP 503 from the start: only failover can deliver.
        spectrum.set_faults(http_error_rate=1.0, http_error_status=503)
        yield spectrum, public


@pytest.mark.parametrize("mode", ["onramp", "treasury"])
def test_a_paid_session_ends_with_verified_musd_in_the_wallet(
    tmp_path: Path, database_url: str, chain: LocalChain, proxies: tuple[RunningProxy, RunningProxy], mode: str
) -> None:
    spectrum, public = proxies
    api_port = free_port()
    # In treasury mode Stripe delivers nothing on Mezo (the emulator's default fulfiller invents a hash).
    extra = ["--chain", json.dumps(chain.info())] if mode == "onramp" else []
    with running_emulator(tmp_path, webhook_port=api_port, extra=extra) as emulator:
        env = api_environment(
            database_url,
            emulator.url,
            chain_id=str(chain.chain_id),
            rpc_providers=f"spectrum={spectrum.url}/spectrum-key-0123456789abcdef/mezo,public={public.url}",
            musd_address=chain.musd_address,
            delivery_mode=mode,
            treasury_key=chain.treasury_key,
            delivery_poll_seconds="0.1",
            rpc_poll_interval_seconds="0.2",
            rpc_timeout_seconds="2",
        )
        api = start_api(tmp_path, api_port, env)
        try:
            buyer = Account.create().address
            with api.client() as client:
                response = client.post(
                    SESSIONS,
                    json={"walletAddress": buyer, "sourceAmount": "100.00"},
                    headers={"Idempotency-Key": str(uuid.uuid4())},
                )
                assert response.status_code == 201, response.text
                created = response.json()
                emulator.advance(created["stripeSessionId"], "fulfillment_complete")

                def delivered() -> dict[str, Any] | None:
                    body: dict[str, Any] = client.get(f"{SESSIONS}/{created['id']}").json()
                    delivery = body.get("delivery") or {}
                    return body if delivery.get("status") == "verified" else None

                session = wait_until(delivered, timeout=30, what=f"the {mode} delivery to be verified")
        finally:
            api.process.stop()
    delivery = session["delivery"]
    amount = session["transactionDetails"]["destinationAmount"]
    assert delivery["mode"] == mode
    assert chain.musd_balance(buyer) == to_units(amount)
    assert delivery["deliveredAmount"] is not None
    assert to_units(delivery["deliveredAmount"]) == to_units(amount)
    receipt = chain.w3.eth.get_transaction_receipt(delivery["txHash"])
    assert receipt["status"] == 1
    if mode == "onramp":
        assert delivery["txHash"] == session["transactionDetails"]["transactionId"]
    # Every chain call went to the public provider once the primary failed; the primary was tried and refused.
    assert public.stats()["methods"].get("eth_getTransactionReceipt", 0) >= 1
    assert spectrum.stats()["requests"] >= 1
