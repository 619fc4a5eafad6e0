"""Stripe's own shut-offs are outages, not buyers' rejections: codes meaning the integration is at fault become
`503 onramp-unavailable` with Retry-After, their own error_type and failure reason, and fire OnrampUnavailable.

Real processes: the Stripe emulator (its `onramp_unavailable` fault) over HTTP through the official SDK, the API in
process on both databases, and for the alert the API as `musdpay serve` scraped by a real Prometheus running the
shipped rules at 1 s intervals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from payment.api import create_app
from payment.core.problems import PROBLEM_TYPES
from payment.onramp.stripe_gateway import INTEGRATION_FAULT_CODES, StripeErrorType, stripe_error_type
from tests.alerts.support import running_prometheus
from tests.payment.conftest import make_settings
from tests.payment.onramp.test_views import SESSIONS, VALID, count_rows
from tests.support.auth import api_key, bearer
from tests.support.services import free_port
from tests.support.stack import API_KEY, Emulator, api_environment, running_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def client(database_url: str, healthy: Emulator, factory: sessionmaker[Session]) -> Iterator[TestClient]:
    settings = make_settings(database_url, stripe_api_base=healthy.url, stripe_secret_key=API_KEY)
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=bearer(api_key(factory))) as client:
        yield client


def sample(client: TestClient, name: str, **labels: str) -> float | None:
    value: float | None = client.app.state.musdpay.telemetry.metrics.registry.get_sample_value(name, labels)  # type: ignore[attr-defined]
    return value


@pytest.mark.parametrize("code", sorted(INTEGRATION_FAULT_CODES))
def test_the_integration_codes_are_outages_and_the_buyers_stay_rejections(code: str) -> None:
    def error(code: str) -> stripe.InvalidRequestError:
        return stripe.InvalidRequestError("refused", None, code=code, http_status=400)

    assert stripe_error_type(error(code)) is StripeErrorType.onramp_unavailable
    for buyer in ("crypto_onramp_unsupported_country", "crypto_onramp_unsupportable_customer"):
        assert stripe_error_type(error(buyer)) is StripeErrorType.rejected
    assert stripe_error_type(error("parameter_unknown")) is StripeErrorType.invalid_request


@pytest.mark.parametrize("code", sorted(INTEGRATION_FAULT_CODES))
def test_a_shut_off_onramp_is_a_503_that_stores_nothing_and_is_counted(
    client: TestClient, healthy: Emulator, factory: sessionmaker[Session], code: str
) -> None:
    healthy.set_faults(onramp_unavailable=code)
    before = len(healthy.sessions())
    response = client.post(SESSIONS, json=VALID, headers={"Idempotency-Key": f"shut-off-{code}"})
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "60"
    problem = response.json()
    assert problem["type"] == "/problems/onramp-unavailable"
    assert problem["status"] == 503
    assert problem["code"] == code
    assert problem["instance"] == SESSIONS
    assert "business_name" not in problem["detail"]  # Stripe's words are for us (logs), not for the buyer
    assert count_rows(factory) == 0
    assert len(healthy.sessions()) == before
    errors = "musdpay_stripe_errors_total"
    assert sample(client, errors, operation="create_onramp_session", error_type="onramp_unavailable") == 1
    assert sample(client, errors, operation="create_onramp_session", error_type="rejected") == 0
    failures = "musdpay_onramp_session_create_failures_total"
    assert sample(client, failures, reason="onramp-unavailable") == 1
    assert sample(client, failures, reason="stripe-rejected") == 0

    # Healed, the same Idempotency-Key creates the session: the refusal left nothing that blocks the retry.
    healthy.set_faults()
    retried = client.post(SESSIONS, json=VALID, headers={"Idempotency-Key": f"shut-off-{code}"})
    assert retried.status_code == 201, retried.text
    assert count_rows(factory) == 1


def test_the_problem_type_is_served_and_documented(client: TestClient) -> None:
    page = client.get("/problems/onramp-unavailable")
    assert page.status_code == 200
    assert PROBLEM_TYPES["onramp-unavailable"] in page.text
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    assert "| 503 `onramp-unavailable` |" in readme


def test_prometheus_fires_onramp_unavailable_from_the_apis_metrics(emulator: Emulator, tmp_path: Path) -> None:
    emulator.set_faults()
    port = free_port()
    env = api_environment(
        f"sqlite:///{tmp_path / 'alert.sqlite'}", emulator.url, delivery_worker_enabled="false", log_level="WARNING"
    )
    with (
        running_api(tmp_path, port, env) as api,
        running_prometheus(tmp_path, {"musdpay-api": f"127.0.0.1:{port}"}, None) as prometheus,
        api.client() as http,
    ):

        def firing() -> list[object]:
            return prometheus.query('ALERTS{alertname="OnrampUnavailable",alertstate="firing"}')

        # The zero is scraped first (series known in advance), so the first refusal is an increase.
        wait_until(
            lambda: prometheus.query(
                'musdpay_stripe_errors_total{job="musdpay-api",error_type="onramp_unavailable"} == 0'
            ),
            timeout=30,
            what="the pre-created zero scraped",
        )
        assert http.post(SESSIONS, json=VALID).status_code == 201
        assert not firing()
        emulator.set_faults(onramp_unavailable="crypto_onramp_disabled")
        try:
            refused = http.post(SESSIONS, json=VALID)
        finally:
            emulator.set_faults()
        assert refused.status_code == 503
        assert refused.json()["type"] == "/problems/onramp-unavailable"
        [alert] = wait_until(firing, timeout=60, what="OnrampUnavailable firing")
        labels = alert["metric"]  # type: ignore[index]
        assert (labels["severity"], labels["service"], labels["job"]) == ("critical", "stripe", "musdpay-api")
        # One refusal is enough; a healthy creation afterwards does not silence it within the window.
        assert http.post(SESSIONS, json=VALID).status_code == 201
        assert firing()
