"""The `musdpay` command as a user runs it: `db upgrade`, and `dev` (what `make run` starts) with the README's flow."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from web3 import Web3

from payment.core import migrations
from sandbox.chain.artifact import musd_artifact
from sandbox.chain.musd import to_units
from tests.sandbox.chain.support import require_anvil
from tests.support.services import ROOT, free_port, musdpay_command, start_process, wait_http_ok
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_db_upgrade_brings_an_empty_database_to_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    result = subprocess.run(
        musdpay_command("db", "upgrade"),
        env={"PATH": "/usr/bin:/bin", "MUSDPAY_DATABASE_URL": url, "MUSDPAY_ENVIRONMENT": "test"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    head = migrations.head_revision()
    assert f"database at revision {head} (head {head})" in result.stdout


def test_the_readme_flow_runs_on_the_dev_stack(tmp_path: Path) -> None:
    require_anvil()
    api_port, stripe_port, monitor_port = free_port(), free_port(), free_port()
    chain_port = free_port_run(3)  # the chain, then its two proxies on the next ports
    env = {"MUSDPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite'}"}
    stack = start_process(
        musdpay_command(
            "dev",
            "--port",
            str(api_port),
            "--stripe-port",
            str(stripe_port),
            "--chain-port",
            str(chain_port),
            "--monitor-port",
            str(monitor_port),
        ),
        env=env,
        log_path=tmp_path / "dev.log",
    )
    api, stripe = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{stripe_port}"
    try:
        wait_http_ok(f"{api}/healthz", stack)
        wait_http_ok(f"{stripe}/_sandbox/faults", stack)
        assert httpx.get(f"{api}/readyz").status_code == 200
        # `musdpay dev` prints a development operator API key, as the README's curl uses it.
        printed = re.search(r"Development operator API key .*: (mpk_\S+)", stack.log())
        assert printed, stack.log()
        auth = {"Authorization": f"Bearer {printed.group(1)}"}
        assert httpx.post(f"{api}/api/v1/onramp/sessions", json={}).status_code == 401
        created = httpx.post(
            f"{api}/api/v1/onramp/sessions",
            json={"walletAddress": "0x52908400098527886E0F7030069857D2E4169EE7", "sourceAmount": "100.00"},
            headers={"Idempotency-Key": str(uuid.uuid4()), **auth},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        session = created.json()
        advanced = httpx.post(
            f"{stripe}/_sandbox/onramp_sessions/{session['stripeSessionId']}/advance",
            json={"status": "fulfillment_complete"},
            timeout=30,
        )
        assert advanced.status_code == 200, advanced.text

        def fulfilled() -> bool:
            body = httpx.get(f"{api}/api/v1/onramp/sessions/{session['id']}", headers=auth).json()
            return body["status"] == "fulfillment_complete" and body["transactionDetails"]["transactionId"]

        wait_until(fulfilled, timeout=20, what="the session to be fulfilled through signed webhooks")

        # The emulator paid the buyer real MUSD on the local chain, and the API verified it there.
        def verified() -> dict[str, Any] | None:
            body: dict[str, Any] = httpx.get(f"{api}/api/v1/onramp/sessions/{session['id']}", headers=auth).json()
            return body if (body.get("delivery") or {}).get("status") == "verified" else None

        final = wait_until(verified, timeout=30, what="the MUSD delivery to be verified on the local chain")
        assert final["delivery"]["txHash"] == final["transactionDetails"]["transactionId"]
        chain = re.search(r"Local Mezo chain on (\S+) \(MUSD (0x[0-9a-fA-F]{40})\)", stack.log())
        assert chain, stack.log()
        musd = Web3(Web3.HTTPProvider(chain.group(1))).eth.contract(address=chain.group(2), abi=musd_artifact().abi)
        balance = musd.functions.balanceOf("0x52908400098527886E0F7030069857D2E4169EE7").call()
        assert balance == to_units(final["transactionDetails"]["destinationAmount"])

        # The monitor of the stack probes the "spectrum" proxy: taking it down shows within two probe intervals.
        monitor = f"http://127.0.0.1:{monitor_port}/metrics"
        wait_until(lambda: monitor_value(monitor, "musdpay_monitor_rpc_up", provider="spectrum") == 1, timeout=30)
        control = re.search(r"spectrum http://\S+ \(faults: (\S+)/_proxy/faults\)", stack.log())
        assert control, stack.log()
        httpx.put(f"{control.group(1)}/_proxy/faults", json={"down": True}, timeout=10).raise_for_status()
        wait_until(
            lambda: monitor_value(monitor, "musdpay_monitor_rpc_up", provider="spectrum") == 0,
            timeout=2 * 5 + 5,
            what="the monitor to report spectrum down",
        )
        assert monitor_value(monitor, "musdpay_monitor_rpc_up", provider="public") == 1
    finally:
        assert stack.stop() == 0, stack.log()


def monitor_value(url: str, name: str, **labels: str) -> float | None:
    """One sample of the monitor's /metrics, read with prometheus_client's parser (None when absent)."""
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def free_port_run(count: int) -> int:
    """A port with the `count - 1` ports after it free too (the dev stack puts its RPC proxies there)."""
    for _ in range(50):
        first = free_port()
        with contextlib.ExitStack() as stack:
            try:
                for offset in range(count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", first + offset))
            except OSError:
                continue
            return first
    raise AssertionError("no run of free ports")
