"""`musdpay sandbox chain` as a user runs it: one JSON line, a usable chain, anvil gone after a signal."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from web3 import Web3

from sandbox.chain.local import LocalChain, running_chain
from tests.sandbox.chain.support import foreground, require_anvil
from tests.support.services import ROOT, free_port, musdpay_command

pytestmark = pytest.mark.integration

BUYER = "0x52908400098527886E0F7030069857D2E4169EE7"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_command_prints_its_chain_and_stops_anvil_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    require_anvil()
    port = free_port()
    with foreground(tmp_path, "sandbox", "chain", "--port", str(port)) as process:
        info = process.start
        assert info["rpcUrl"] == f"http://127.0.0.1:{port}"
        assert info["chainId"] == 31611
        assert set(info) >= {"musdAddress", "treasuryAddress", "treasuryPrivateKey", "deployerAddress"}
        chain = LocalChain.attach(info)
        assert chain.musd_balance(info["treasuryAddress"]) == 1_000_000 * 10**18
        chain.transfer_musd(BUYER, 10**18)
        assert chain.musd_balance(BUYER) == 10**18

        process.popen.send_signal(sig)  # to the CLI only: it must stop anvil itself
        assert process.popen.wait(15) == 0, process.stderr()
        assert process.stdout().count("\n") == 1  # nothing but the start line on stdout
        assert not Web3(Web3.HTTPProvider(info["rpcUrl"], exception_retry_configuration=None)).is_connected()


def test_no_automine_and_block_time_reach_anvil(tmp_path: Path) -> None:
    require_anvil()
    with foreground(tmp_path, "sandbox", "chain", "--port", "0", "--no-automine", "--block-time", "0.2") as process:
        assert process.start["automine"] is False
        chain = LocalChain.attach(process.start)
        tx_hash = chain.transfer_musd(BUYER, 10**18, wait=False)
        chain.sender.wait(tx_hash, timeout=5)  # mined by the interval, nobody called evm_mine
        assert chain.musd_balance(BUYER) == 10**18


def test_a_taken_port_is_reported_and_exits_1() -> None:
    require_anvil()
    with running_chain() as chain:
        port = chain.rpc_url.rsplit(":", 1)[1]
        result = subprocess.run(
            musdpay_command("sandbox", "chain", "--port", port),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot start the local chain" in result.stderr
    assert result.stdout == ""
