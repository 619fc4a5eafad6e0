"""With several workers (`musdpay serve --workers 2`, multiprocess mode), the series known in advance are at 0 in
/metrics from the start too: each worker writes its zeros to the shared directory."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.auth import JWT_KEYS
from tests.support.services import free_port, musdpay_command, start_process, wait_http_ok
from tests.support.stack import API_KEY, WEBHOOK_SECRET

pytestmark = pytest.mark.integration


def test_two_workers_export_the_known_series_at_zero(tmp_path: Path) -> None:
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
    api = start_process(
        musdpay_command("serve", "--port", str(port), "--workers", "2"), env=env, log_path=tmp_path / "api.log"
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/healthz", api)
        scrape = httpx.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10).text
    finally:
        api.stop()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
    }
    expected = [
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
    for name, labels in expected:
        assert samples.get((name, tuple(sorted(labels.items())))) == 0.0, (name, labels)
