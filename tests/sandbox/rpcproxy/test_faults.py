"""Each fault against real anvil, and healing: after `heal()` the same client is served normally again."""

from __future__ import annotations

import time

import httpx
import pytest
import requests
from web3.exceptions import BlockNotFound, Web3RPCError

from sandbox.chain.local import LocalChain
from sandbox.chain.musd import MusdClient
from sandbox.chain.transactions import Sender
from sandbox.rpcproxy.server import RunningProxy
from tests.sandbox.rpcproxy.support import call, rpc, web3_via

pytestmark = pytest.mark.integration

BUYER = "0x52908400098527886E0F7030069857D2E4169EE7"


def healed(proxy: RunningProxy, client: httpx.Client) -> None:
    proxy.heal()
    assert rpc(client, proxy.url, "eth_chainId") == hex(31611)


def test_latency_delays_every_answer(proxy: RunningProxy, client: httpx.Client) -> None:
    proxy.set_faults(latency_ms=150, jitter_ms=50)
    for _ in range(3):
        started = time.monotonic()
        rpc(client, proxy.url, "eth_blockNumber")
        assert 0.15 <= time.monotonic() - started < 1.0
    assert proxy.stats()["faults"]["latency"] == 3
    healed(proxy, client)
    started = time.monotonic()
    rpc(client, proxy.url, "eth_blockNumber")
    assert time.monotonic() - started < 0.15


def test_http_5xx(proxy: RunningProxy, client: httpx.Client) -> None:
    proxy.set_faults(http_error_rate=1, http_error_status=502)
    response = client.post(proxy.url, json=call("eth_blockNumber"))
    assert response.status_code == 502
    with pytest.raises(requests.HTTPError, match="502"):
        _ = web3_via(proxy.url).eth.block_number
    assert proxy.stats()["faults"]["http_error"] == 2
    assert proxy.stats()["forwarded"] == 0
    healed(proxy, client)


def test_http_429_with_retry_after(proxy: RunningProxy, client: httpx.Client) -> None:
    proxy.set_faults(rate_limit_rate=1, retry_after_seconds=3)
    response = client.post(proxy.url, json=call("eth_blockNumber"))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == -32005
    healed(proxy, client)


def test_json_rpc_errors_per_call(proxy: RunningProxy, client: httpx.Client) -> None:
    proxy.set_faults(rpc_error_rate=1, rpc_error_code=-32000, rpc_error_message="header not found")
    with pytest.raises(Web3RPCError, match="header not found"):
        web3_via(proxy.url).eth.get_block("latest")
    # In a batch, only the calls the fault picks fail; the others are answered by anvil, ids and order kept.
    proxy.set_faults(rpc_error_rate=0.5, seed=3, methods=["eth_blockNumber"])
    batch = [call("eth_chainId", id_=1), call("eth_blockNumber", id_=2), call("net_version", id_=3)]
    answers = client.post(proxy.url, json=batch).json()
    assert [answer["id"] for answer in answers] == [1, 2, 3]
    assert answers[0]["result"] == hex(31611)
    assert answers[2]["result"] == "31611"
    healed(proxy, client)


def test_rates_are_reproducible_from_the_seed(proxy: RunningProxy, client: httpx.Client) -> None:
    def outcomes() -> list[int]:
        return [client.post(proxy.url, json=call("eth_chainId")).status_code for _ in range(20)]

    proxy.set_faults(http_error_rate=0.5, seed=42)
    first = outcomes()
    proxy.set_faults(http_error_rate=0.5, seed=42)
    assert outcomes() == first
    assert set(first) == {200, 503}


def test_faults_can_target_one_method(proxy: RunningProxy, client: httpx.Client) -> None:
    proxy.set_faults(http_error_rate=1, latency_ms=300, methods=["eth_sendRawTransaction"])
    started = time.monotonic()
    assert rpc(client, proxy.url, "eth_blockNumber")
    assert time.monotonic() - started < 0.3
    started = time.monotonic()
    assert client.post(proxy.url, json=call("eth_sendRawTransaction", ["0x00"])).status_code == 503
    assert time.monotonic() - started >= 0.3


def test_a_timeout_holds_the_request_until_the_client_gives_up(proxy: RunningProxy, client: httpx.Client) -> None:
    proxy.set_faults(timeout_rate=1, timeout_ms=20_000)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.post(proxy.url, json=call("eth_blockNumber"), timeout=0.3)
    assert time.monotonic() - started < 2.0
    with pytest.raises(requests.Timeout):
        _ = web3_via(proxy.url, timeout=0.3).eth.block_number
    assert proxy.stats()["faults"]["timeout"] == 2
    healed(proxy, client)


def test_a_held_request_is_closed_unanswered_after_timeout_ms(proxy: RunningProxy, client: httpx.Client) -> None:
    proxy.set_faults(timeout_rate=1, timeout_ms=200)
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(proxy.url, json=call("eth_blockNumber"), timeout=5)
    assert 0.2 <= time.monotonic() - started < 2.0
    healed(proxy, client)


def test_a_stall_freezes_the_head_while_anvil_mines(chain: LocalChain, proxy: RunningProxy) -> None:
    via = web3_via(proxy.url)
    chain.mine(2)
    head = chain.block_number()
    proxy.set_faults(stall=True)
    chain.mine(3)
    chain.transfer_musd(BUYER, 10**18)  # real activity, not only empty blocks
    assert chain.block_number() == head + 4
    assert via.eth.block_number == head
    assert via.eth.get_block("latest")["number"] == head
    assert via.eth.get_block("latest", full_transactions=True)["number"] == head
    assert via.eth.get_block("finalized")["number"] == head
    with pytest.raises(BlockNotFound):  # a stalled node knows no later block
        via.eth.get_block(head + 1)
    assert via.eth.get_block(head - 1)["number"] == head - 1  # history is served as usual
    assert proxy.stats()["faults"]["stall"] >= 4
    proxy.heal()
    assert via.eth.block_number == head + 4
    assert via.eth.get_block("latest")["number"] == head + 4


def test_a_stall_is_kept_across_other_fault_changes(chain: LocalChain, proxy: RunningProxy) -> None:
    head = chain.block_number()
    proxy.set_faults(stall=True)
    chain.mine(2)
    proxy.patch_faults(latency_ms=1)  # still stalled at the same height, not re-frozen
    assert web3_via(proxy.url).eth.block_number == head


def test_a_wrong_chain_id(chain: LocalChain, proxy: RunningProxy, client: httpx.Client) -> None:
    proxy.set_faults(chain_id=31612)
    via = web3_via(proxy.url)
    assert via.eth.chain_id == 31612
    assert via.net.version == "31612"
    assert via.eth.block_number == chain.block_number()  # everything else is the real node's
    healed(proxy, client)


def test_a_dropped_connection(proxy: RunningProxy, client: httpx.Client) -> None:
    proxy.set_faults(drop_rate=1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(proxy.url, json=call("eth_blockNumber"))
    assert proxy.stats()["forwarded"] == 0
    healed(proxy, client)


def test_a_drop_after_forwarding_loses_only_the_answer(chain: LocalChain, proxy: RunningProxy) -> None:
    musd = MusdClient(Sender(web3_via(proxy.url), chain.chain_id), chain.musd_address)
    proxy.set_faults(drop_rate=1, drop_after_forward=True, methods=["eth_sendRawTransaction"])
    with pytest.raises(requests.ConnectionError):
        musd.transfer(BUYER, 10**18, key=chain.treasury_key, wait=False)
    assert chain.musd_balance(BUYER) == 10**18  # the node executed it: a client must not just resend


def test_down_refuses_connections_and_heals_on_the_same_url(proxy: RunningProxy, client: httpx.Client) -> None:
    assert rpc(client, proxy.url, "eth_chainId")  # a keep-alive connection exists before going down
    proxy.set_faults(down=True)
    with pytest.raises(httpx.TransportError):  # the open connection is closed
        client.post(proxy.url, json=call("eth_chainId"))
    with pytest.raises(httpx.ConnectError), httpx.Client(trust_env=False) as fresh:  # new ones refused
        fresh.post(proxy.url, json=call("eth_chainId"))
    assert proxy.faults()["down"] is True  # the control port still answers
    healed(proxy, client)


def test_down_set_through_the_rpc_port_answers_then_closes(proxy: RunningProxy, client: httpx.Client) -> None:
    response = client.put(f"{proxy.url}/_proxy/faults", json={"down": True})
    assert response.status_code == 200
    assert response.json()["down"] is True
    with pytest.raises(httpx.ConnectError):
        client.post(proxy.url, json=call("eth_chainId"))
    healed(proxy, client)


def test_a_rewritten_batch_keeps_notifications_unanswered(proxy: RunningProxy, client: httpx.Client) -> None:
    proxy.set_faults(chain_id=1)
    notification = {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []}
    answers = client.post(proxy.url, json=[call("eth_chainId", id_=1), notification, call("net_version", id_=2)])
    assert answers.json() == [{"jsonrpc": "2.0", "id": 1, "result": "0x1"}, {"jsonrpc": "2.0", "id": 2, "result": "1"}]
