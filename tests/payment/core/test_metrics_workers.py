"""With several workers (`musdpay serve --workers 2`, multiprocess mode), /metrics has the series known in advance at 0
from the start (each worker writes its zeros to the shared directory) and counts every worker's requests exactly
once."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from payment.core.config import Settings
from tests.support.auth import JWT_KEYS, bearer, wallet_token
from tests.support.services import free_port, musdpay_command, start_process, wait_http_ok
from tests.support.stack import API_KEY, WEBHOOK_SECRET

pytestmark = pytest.mark.integration

ROUTE = "/api/v1/onramp/sessions/{session_id}"


def not_found_count(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "musdpay_http_request_duration_seconds_count"
        and sample.labels.get("route") == ROUTE
        and sample.labels.get("status_code") == "404"
    )


# A few of the series every worker creates at 0 (tests/payment/core/test_metrics_initialise.py checks the sets).
KNOWN_AT_ZERO = [
    ("musdpay_onramp_payment_volume_total", {"currency": "usd", "status": "fulfillment_complete"}),
    ("musdpay_onramp_fees_total", {"currency": "usd", "fee": "network"}),
    (
        "musdpay_onramp_status_transitions_total",
        {"from_status": "fulfillment_processing", "to_status": "rejected", "source": "webhook"},
    ),
    ("musdpay_webhook_events_total", {"type": "crypto.onramp_session_updated", "outcome": "processed"}),
    ("musdpay_delivery_total", {"mode": "onramp", "outcome": "verified"}),
    ("musdpay_stripe_errors_total", {"operation": "create_onramp_session", "error_type": "timeout"}),
    ("musdpay_rpc_errors_total", {"provider": "local", "kind": "http_429"}),  # it polls a closed port: connect
]


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_two_workers_start_the_known_series_at_zero_and_report_the_sum_of_their_requests(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "MUSDPAY_ENVIRONMENT": "test",
        "MUSDPAY_AUTO_MIGRATE": "true",
        "MUSDPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'workers.sqlite'}",
        "MUSDPAY_STRIPE_SECRET_KEY": API_KEY,
        "MUSDPAY_STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "MUSDPAY_JWT_KEYS": JWT_KEYS,
        "MUSDPAY_RPC_PROVIDERS": f"local=http://127.0.0.1:{free_port()}",
    }
    wallet = bearer(wallet_token(Settings(jwt_keys=JWT_KEYS), "0x52908400098527886E0F7030069857D2E4169EE7"))
    api = start_process(
        musdpay_command("serve", "--port", str(port), "--workers", "2"), env=env, log_path=tmp_path / "api.log"
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/healthz", api)
        for _ in range(5):  # whichever worker answers
            first = samples_of(httpx.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10).text)
            for name, labels in KNOWN_AT_ZERO:
                assert first.get((name, tuple(sorted(labels.items())))) == 0.0, (name, labels)
        requests = 40
        for _ in range(requests):
            # A new connection each time, so the kernel spreads them over both workers.
            response = httpx.get(
                f"{url}/api/v1/onramp/sessions/{uuid.uuid4()}", headers={"Connection": "close", **wallet}
            )
            assert response.status_code == 404
        for _ in range(5):  # whichever worker answers the scrape, the total is the same
            scrape = httpx.get(f"{url}/metrics", headers={"Connection": "close"})
            assert not_found_count(scrape.text) == requests
    finally:
        api.stop()
    workers = {line for line in api.log().splitlines() if "Started server process" in line}
    assert len(workers) == 2  # two worker processes really served
