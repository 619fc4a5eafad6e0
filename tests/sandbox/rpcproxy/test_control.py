"""The /_proxy/ control API: validation, PUT/PATCH semantics, stats, health, and an unreachable upstream."""

from __future__ import annotations

import httpx
import pytest

from sandbox.rpcproxy.faults import Faults
from sandbox.rpcproxy.server import RunningProxy, running_proxy
from tests.sandbox.rpcproxy.support import call, rpc
from tests.support.services import free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"nope": 1}, "unknown fault"),
        ({"http_error_rate": 1.5}, "between 0 and 1"),
        ({"http_error_rate": True}, "must be a number"),
        ({"http_error_status": 404}, "5xx"),
        ({"timeout_ms": 10_000_000}, "between 0 and"),
        ({"stall": "yes"}, "boolean"),
        ({"chain_id": 0}, "positive"),
        ({"methods": "eth_call"}, "list"),
        ([], "JSON object"),
    ],
)
def test_invalid_faults_are_refused_and_change_nothing(proxy: RunningProxy, body: object, message: str) -> None:
    with httpx.Client(base_url=proxy.control_url, trust_env=False) as control:
        response = control.put("/_proxy/faults", json=body)
        assert response.status_code == 400
        assert message in response.json()["error"]["message"]
        assert control.put("/_proxy/faults", content=b"{").status_code == 400
    assert proxy.faults() == Faults().to_json()


def test_put_replaces_and_patch_merges(proxy: RunningProxy) -> None:
    proxy.set_faults(latency_ms=5, chain_id=1, seed=9)
    assert proxy.patch_faults(rpc_error_rate=0.5)["latency_ms"] == 5
    replaced = proxy.set_faults(drop_rate=0.1)
    assert (replaced["latency_ms"], replaced["chain_id"], replaced["rpc_error_rate"]) == (0, None, 0)
    assert replaced["seed"] == 9  # kept unless given
    assert proxy.heal() == {**Faults().to_json(), "seed": 9}


def test_stats_count_and_reset(proxy: RunningProxy, client: httpx.Client) -> None:
    rpc(client, proxy.url, "eth_chainId")
    client.post(proxy.url, json=[call("eth_blockNumber", id_=1), call("eth_blockNumber", id_=2)])
    stats = proxy.stats()
    assert stats["name"] == "spectrum"
    assert (stats["requests"], stats["calls"]) == (2, 3)
    assert stats["methods"] == {"eth_chainId": 1, "eth_blockNumber": 2}
    assert proxy.reset_stats()["requests"] == 0
    assert proxy.stats()["methods"] == {}


def test_control_routes(proxy: RunningProxy, client: httpx.Client) -> None:
    health = client.get(f"{proxy.control_url}/_proxy/health").json()
    assert health == {
        "status": "ok",
        "name": "spectrum",
        "upstream": proxy.upstream,
        "down": False,
        "stalledHead": None,
    }
    assert client.get(f"{proxy.url}/_proxy/health").status_code == 200  # also on the RPC port
    assert client.get(f"{proxy.url}/_proxy/nothing").status_code == 404
    assert client.post(f"{proxy.url}/_proxy/stats").status_code == 405
    assert client.post(proxy.control_url, json=call("eth_chainId")).status_code == 404  # no JSON-RPC there


def test_an_unreachable_upstream_is_a_502_and_cannot_be_stalled(client: httpx.Client) -> None:
    with running_proxy(f"http://127.0.0.1:{free_port()}", name="dead") as proxy:
        response = client.post(proxy.url, json=call("eth_chainId"))
        assert response.status_code == 502
        assert proxy.stats()["upstreamErrors"] == 1
        stall = client.put(f"{proxy.control_url}/_proxy/faults", json={"stall": True})
        assert stall.status_code == 502
        assert proxy.faults()["stall"] is False
