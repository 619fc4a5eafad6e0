"""Without faults the proxy is transparent: web3 through it sees what web3 sees directly."""

from __future__ import annotations

import httpx
import pytest

from sandbox.chain.local import LocalChain
from sandbox.chain.musd import MusdClient
from sandbox.chain.transactions import Sender
from sandbox.rpcproxy.server import RunningProxy
from tests.sandbox.rpcproxy.support import call, rpc, web3_via

pytestmark = pytest.mark.integration

BUYER = "0x52908400098527886E0F7030069857D2E4169EE7"


def test_web3_through_the_proxy_reads_what_it_reads_directly(chain: LocalChain, proxy: RunningProxy) -> None:
    chain.mine(5)
    via = web3_via(proxy.url)
    assert via.eth.chain_id == chain.w3.eth.chain_id == 31611
    assert via.eth.block_number == chain.w3.eth.block_number
    assert via.eth.get_block("latest")["hash"] == chain.w3.eth.get_block("latest")["hash"]
    assert via.eth.get_balance(chain.treasury_address) == chain.btc_balance(chain.treasury_address)


def test_a_transfer_sent_through_the_proxy_lands(chain: LocalChain, proxy: RunningProxy) -> None:
    musd = MusdClient(Sender(web3_via(proxy.url), chain.chain_id), chain.musd_address)
    musd.transfer(BUYER, 10**18, key=chain.treasury_key)
    assert chain.musd_balance(BUYER) == 10**18
    methods = proxy.stats()["methods"]
    assert methods["eth_sendRawTransaction"] == 1
    assert methods["eth_getTransactionReceipt"] >= 1


def test_a_batch_passes_through_with_its_ids(chain: LocalChain, proxy: RunningProxy, client: httpx.Client) -> None:
    batch = [call("eth_chainId", id_=7), call("eth_blockNumber", id_=8), call("net_version", id_=9)]
    response = client.post(proxy.url, json=batch)
    assert response.status_code == 200
    answers = {answer["id"]: answer["result"] for answer in response.json()}
    assert answers == {7: hex(31611), 8: hex(chain.block_number()), 9: "31611"}
    stats = proxy.stats()
    assert (stats["requests"], stats["calls"], stats["forwarded"]) == (1, 3, 1)
    assert stats["methods"] == {"eth_chainId": 1, "eth_blockNumber": 1, "net_version": 1}
    assert stats["faults"] == {}


def test_upstream_errors_and_invalid_bodies_pass_through(proxy: RunningProxy, client: httpx.Client) -> None:
    unknown = client.post(proxy.url, json=call("eth_noSuchMethod")).json()
    assert unknown["error"]["code"] == -32601  # anvil's own answer, untouched
    garbage = client.post(proxy.url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert garbage.status_code in (200, 400)  # whatever anvil says about it
    assert proxy.stats()["invalid"] == 1


def test_only_post_is_json_rpc(proxy: RunningProxy, client: httpx.Client) -> None:
    assert client.get(proxy.url).status_code == 405
    assert rpc(client, proxy.url, "eth_chainId") == hex(31611)
