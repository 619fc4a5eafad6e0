"""The `musdpay` command as a user runs it: `db upgrade`, and `dev` (what `make run` starts) with the README's flow."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from payment.core import migrations
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
    api_port, stripe_port = free_port(), free_port()
    env = {"MUSDPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite'}"}
    stack = start_process(
        musdpay_command("dev", "--port", str(api_port), "--stripe-port", str(stripe_port)),
        env=env,
        log_path=tmp_path / "dev.log",
    )
    api, stripe = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{stripe_port}"
    try:
        wait_http_ok(f"{api}/healthz", stack)
        wait_http_ok(f"{stripe}/_sandbox/faults", stack)
        assert httpx.get(f"{api}/readyz").status_code == 200
        created = httpx.post(
            f"{api}/api/v1/onramp/sessions",
            json={"walletAddress": "0x52908400098527886E0F7030069857D2E4169EE7", "sourceAmount": "100.00"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
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
            body = httpx.get(f"{api}/api/v1/onramp/sessions/{session['id']}").json()
            return body["status"] == "fulfillment_complete" and body["transactionDetails"]["transactionId"]

        wait_until(fulfilled, timeout=20, what="the session to be fulfilled through signed webhooks")
    finally:
        assert stack.stop() == 0, stack.log()
