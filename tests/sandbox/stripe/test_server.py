"""`run`, as the CLI uses it: a foreground process that prints its address and stops cleanly on a signal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from sandbox.stripe.app import create_app
from sandbox.stripe.config import EmulatorConfig
from sandbox.stripe.server import running_emulator
from tests.sandbox.stripe.support import API_KEY, WebhookReceiver

pytestmark = pytest.mark.integration

_RUN = (
    "import json, sys\n"
    "from sandbox.stripe.config import EmulatorConfig\n"
    "from sandbox.stripe.server import run\n"
    "run(EmulatorConfig(**json.loads(sys.argv[1])))\n"
    "print('returned')\n"
)


@contextmanager
def emulator_process(**config: Any) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    config.setdefault("port", 0)
    process = subprocess.Popen(
        [sys.executable, "-c", _RUN, json.dumps(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        start = json.loads(process.stdout.readline())
        yield process, start
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_prints_its_address_serves_and_exits_cleanly(sig: signal.Signals) -> None:
    with emulator_process() as (process, start):
        assert set(start) == {"url", "webhookSecret"}
        assert start["webhookSecret"] is None
        assert start["url"].startswith("http://127.0.0.1:")
        assert not start["url"].endswith(":0")
        response = httpx.get(f"{start['url']}/v1/balance", headers={"Authorization": f"Bearer {API_KEY}"})
        assert response.status_code == 200
        process.send_signal(sig)
        out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        assert out.strip() == "returned"


def test_run_prints_the_generated_webhook_secret_and_delivers_with_it(receiver: WebhookReceiver) -> None:
    with emulator_process(webhook_urls=[receiver.url], auto_advance="requires_payment", auto_advance_delay=0.01) as (
        process,
        start,
    ):
        secret = start["webhookSecret"]
        assert secret.startswith("whsec_")
        receiver.secret = secret
        created = httpx.post(
            f"{start['url']}/v1/crypto/onramp_sessions",
            data={"source_amount": "10.00"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        assert created.status_code == 200, created.text
        (received,) = receiver.wait_for(1)
        assert received.error is None
        process.terminate()
        assert process.wait(15) == 0


def test_the_in_process_server_releases_its_port() -> None:
    with running_emulator(EmulatorConfig(port=0)) as running:
        assert httpx.get(f"{running.url}/_sandbox/health").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{running.url}/_sandbox/health")


def test_a_bad_startup_webhook_url_is_refused() -> None:
    with pytest.raises(ValueError, match="webhook url"):
        create_app(EmulatorConfig(webhook_urls=["not a url"]))
