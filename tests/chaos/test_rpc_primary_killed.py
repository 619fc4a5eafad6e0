"""The primary RPC provider killed during treasury deliveries (issue 15.5): the pool fails over to the public
provider, and every delivery is paid exactly once, counted on chain (the treasury's MUSD Transfer logs on anvil).

anvil <- two RPC fault proxies ("spectrum", the primary, and "public") <- the API in treasury mode with its
delivery worker. Once the first transfer is on chain the primary goes `down` (its port refuses connections, as a
dead process's would), with the other deliveries queued or in flight.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from sandbox.chain.local import LocalChain, running_chain
from sandbox.chain.musd import to_units
from sandbox.rpcproxy.server import running_proxy
from tests.sandbox.chain.support import require_anvil
from tests.support.chaos import SESSIONS, Stopwatch, report
from tests.support.services import free_port
from tests.support.stack import api_environment, running_emulator, start_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DELIVERIES = 12


@pytest.fixture
def chain() -> Iterator[LocalChain]:
    require_anvil()
    with running_chain() as chain:
        yield chain


def _treasury_transfers(chain: LocalChain) -> list[dict[str, Any]]:
    logs = chain.musd.contract.events.Transfer().get_logs(
        from_block=0, argument_filters={"from": chain.treasury_address}
    )
    return [dict(log["args"]) for log in logs]


def test_primary_rpc_killed_during_treasury_deliveries_fails_over_and_pays_each_once(
    tmp_path: Path, chain: LocalChain
) -> None:
    port = free_port()
    with (
        running_proxy(chain.rpc_url, name="spectrum") as spectrum,
        running_proxy(chain.rpc_url, name="public") as public,
        running_emulator(tmp_path, webhook_port=port) as emulator,
    ):
        env = api_environment(
            f"sqlite:///{tmp_path / 'musdpay.sqlite'}",
            emulator.url,
            chain_id=str(chain.chain_id),
            rpc_providers=f"spectrum={spectrum.url}/spectrum-key-0123456789abcdef/mezo,public={public.url}",
            musd_address=chain.musd_address,
            delivery_mode="treasury",
            treasury_key=chain.treasury_key,
            delivery_poll_seconds="0.1",
            rpc_poll_interval_seconds="0.2",
            rpc_timeout_seconds="2",
            reconcile_interval_seconds="0",
            rate_limit_enabled="false",
        )
        api = start_api(tmp_path, port, env)
        try:
            buyers = [Account.create().address for _ in range(DELIVERIES)]
            with api.client() as client:

                def buy(buyer: str) -> dict[str, Any]:
                    answer = client.post(SESSIONS, json={"walletAddress": buyer, "sourceAmount": "30.00"})
                    assert answer.status_code == 201, answer.text
                    body: dict[str, Any] = answer.json()
                    emulator.advance(body["stripeSessionId"], "fulfillment_complete")
                    return body

                with ThreadPoolExecutor(max_workers=4) as pool:
                    futures = [pool.submit(buy, buyer) for buyer in buyers]
                    wait_until(lambda: _treasury_transfers(chain), timeout=60, what="the first treasury transfer")
                    spectrum.set_faults(down=True)  # the primary dies, deliveries under way
                    killed = Stopwatch()
                    before_kill = len(_treasury_transfers(chain))
                    created = [future.result(timeout=60) for future in futures]

                def delivery(session: dict[str, Any]) -> dict[str, Any]:
                    found: dict[str, Any] = client.get(f"{SESSIONS}/{session['id']}").json().get("delivery") or {}
                    return found

                wait_until(
                    lambda: all(delivery(s).get("status") == "verified" for s in created),
                    timeout=60,
                    interval=0.2,
                    what="every treasury delivery verified",
                )
                recovered_seconds = killed.elapsed()
                deliveries = [delivery(s) for s in created]
                spectrum_requests_after_kill = spectrum.stats()["requests"]
        finally:
            api.process.stop()
        public_sends = public.stats()["methods"].get("eth_sendRawTransaction", 0)
    transfers = _treasury_transfers(chain)
    paid: dict[str, int] = {}
    for transfer in transfers:
        paid[transfer["to"]] = paid.get(transfer["to"], 0) + 1
    expected = {s["walletAddress"]: to_units(d["deliveredAmount"]) for s, d in zip(created, deliveries, strict=True)}
    figures = {
        "deliveries": DELIVERIES,
        "transfers_on_chain": len(transfers),
        "transfers_before_the_kill": before_kill,
        "sent_through_public": public_sends,
        "all_verified_after_kill_seconds": recovered_seconds,
        "lost": sum(1 for buyer in expected if paid.get(buyer, 0) == 0),
        "duplicated": sum(count - 1 for count in paid.values() if count > 1),
    }
    report(tmp_path, "rpc-primary-killed", figures)
    assert before_kill < DELIVERIES  # the kill fell during the deliveries, not after them
    assert public_sends >= 1  # failover: deliveries after the kill went through the public provider
    assert spectrum_requests_after_kill >= 1
    assert figures["lost"] == 0
    assert figures["duplicated"] == 0
    assert len(transfers) == DELIVERIES
    for buyer, amount in expected.items():  # each buyer received exactly what Stripe says was bought
        assert chain.musd_balance(buyer) == amount
