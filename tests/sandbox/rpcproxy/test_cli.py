"""`musdpay sandbox rpc-proxy` as a user runs it, in front of a real chain."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from sandbox.chain.local import LocalChain
from tests.sandbox.chain.support import foreground
from tests.sandbox.rpcproxy.support import call, rpc

pytestmark = pytest.mark.integration


def test_the_command_proxies_takes_faults_and_stops_on_sigterm(
    tmp_path: Path, chain: LocalChain, client: httpx.Client
) -> None:
    args = ("sandbox", "rpc-proxy", "--upstream", chain.rpc_url, "--name", "spectrum")
    with foreground(tmp_path, *args) as process:
        start = process.start
        assert start["name"] == "spectrum"
        assert start["upstream"] == chain.rpc_url
        assert rpc(client, start["url"], "eth_blockNumber") == hex(chain.block_number())
        faults = client.patch(f"{start['controlUrl']}/_proxy/faults", json={"rate_limit_rate": 1})
        assert faults.status_code == 200
        assert client.post(start["url"], json=call("eth_chainId")).status_code == 429
        process.popen.send_signal(signal.SIGTERM)
        assert process.popen.wait(15) == 0, process.stderr()
    with pytest.raises(httpx.ConnectError):
        httpx.post(start["url"], json=call("eth_chainId"))
