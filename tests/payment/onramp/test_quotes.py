"""Quotes (issue 13.4): `GET /api/v1/onramp/quotes` through the SDK to the emulator's `GET /v1/crypto/onramp/quotes`,
validated like a session, with the Stripe call's metrics; a session keeps the quote the dApp showed, and the slippage
histograms observe quoted vs Stripe's destination_amount once fulfilled, and Stripe's amount vs the chain once
verified. The emulator runs as a process over HTTP; the API in process on both databases; the chain is anvil."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from payment.api import create_app
from payment.onramp.service import quote_slippage
from sandbox.stripe.config import EmulatorConfig
from sandbox.stripe.pricing import quote_from_source
from tests.payment.conftest import event_payload, make_settings, sign
from tests.payment.delivery.conftest import DeliveryRig, chain_params, delivery_settings, new_wallet, rig, units
from tests.payment.onramp.test_views import SESSIONS, VALID, WALLET, count_rows
from tests.support.auth import api_key, bearer, wallet_token
from tests.support.stack import API_KEY, Emulator

pytestmark = pytest.mark.integration
__all__ = ["chain_params", "delivery_settings", "rig"]  # fixtures of the delivery rig, used by the last test

QUOTES = "/api/v1/onramp/quotes"


@pytest.fixture
def client(database_url: str, healthy: Emulator, factory: sessionmaker[Session]) -> Iterator[TestClient]:
    settings = make_settings(database_url, stripe_api_base=healthy.url, stripe_secret_key=API_KEY)
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=bearer(api_key(factory))) as client:
        yield client


def sample(client: TestClient, name: str, **labels: str) -> float:
    app: Any = client.app
    value = app.state.musdpay.telemetry.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


def emulator_price(amount: str) -> Any:
    config = EmulatorConfig()
    return quote_from_source(
        Decimal(amount), "usd", "musd", fee_rate=config.transaction_fee_rate, network_fee=config.network_fee
    )


@pytest.mark.parametrize("amount", ["100.00", "1", "9999.99", "25.5"])
def test_the_estimate_is_the_emulators_pricing(client: TestClient, amount: str) -> None:
    response = client.get(QUOTES, params={"sourceAmount": amount})
    assert response.status_code == 200, response.text
    quote = response.json()
    expected = emulator_price(amount)
    assert set(quote) == {
        "stripeQuoteId", "sourceAmount", "sourceCurrency", "sourceTotalAmount", "destinationAmount",
        "destinationCurrency", "destinationNetwork", "fees", "rateFetchedAt", "livemode",
    }  # fmt: skip
    assert Decimal(quote["sourceAmount"]) == Decimal(amount)
    assert quote["destinationAmount"] == str(expected.destination_amount)
    assert quote["fees"] == {
        "networkFeeAmount": str(expected.network_fee),
        "transactionFeeAmount": str(expected.transaction_fee),
    }
    assert Decimal(quote["sourceTotalAmount"]) == Decimal(amount)
    assert (quote["sourceCurrency"], quote["destinationCurrency"], quote["destinationNetwork"]) == (
        "usd",
        "musd",
        "mezo",
    )
    assert quote["rateFetchedAt"].endswith("Z")
    assert len(quote["stripeQuoteId"]) == 64
    assert sample(client, "musdpay_stripe_request_duration_seconds_count", operation="get_onramp_quotes") == 1


BAD_QUERIES: list[tuple[dict[str, str], str]] = [
    ({}, "query.sourceAmount"),
    ({"sourceAmount": "abc"}, "query.sourceAmount"),
    ({"sourceAmount": "10.001"}, "query.sourceAmount"),
    ({"sourceAmount": "-5"}, "query.sourceAmount"),
    ({"sourceAmount": "0.99"}, "query.sourceAmount"),
    ({"sourceAmount": "10000.01"}, "query.sourceAmount"),
    ({"sourceAmount": "9" * 40}, "query.sourceAmount"),
    ({"sourceAmount": "10", "sourceCurrency": "jpy"}, "query.sourceCurrency"),
    ({"sourceAmount": "10", "destinationCurrency": "usdc"}, "query.destinationCurrency"),
    ({"sourceAmount": "10", "destinationNetwork": "ethereum"}, "query.destinationNetwork"),
]


@pytest.mark.parametrize(("params", "field"), BAD_QUERIES, ids=[f"{p}" for p, _ in BAD_QUERIES])
def test_bad_queries_are_422_problems_and_never_reach_stripe(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    response = client.get(QUOTES, params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/validation-error"
    assert problem["instance"] == QUOTES
    assert any(error["field"] == field for error in problem["errors"]), problem["errors"]
    assert sample(client, "musdpay_stripe_request_duration_seconds_count", operation="get_onramp_quotes") == 0


def test_stripe_down_or_shut_off_is_a_503_with_retry_after(client: TestClient, healthy: Emulator) -> None:
    healthy.set_faults(down=True)
    down = client.get(QUOTES, params={"sourceAmount": "10"})
    assert down.status_code == 503, down.text
    assert down.headers["content-type"] == "application/problem+json"
    assert down.json()["type"] == "/problems/stripe-unavailable"
    assert int(down.headers["retry-after"]) >= 1
    errors = "musdpay_stripe_errors_total"
    assert sample(client, errors, operation="get_onramp_quotes", error_type="server_error") == 1
    assert sample(client, errors, operation="create_onramp_session", error_type="server_error") == 0
    healthy.set_faults(onramp_unavailable="crypto_onramp_disabled")
    off = client.get(QUOTES, params={"sourceAmount": "10"})
    assert off.status_code == 503
    assert off.json()["type"] == "/problems/onramp-unavailable"
    assert off.headers["retry-after"] == "60"
    assert sample(client, errors, operation="get_onramp_quotes", error_type="onramp_unavailable") == 1


def test_callers_are_those_who_may_create_a_session(client: TestClient, database_url: str) -> None:
    operator = client.headers.pop("Authorization")
    anonymous = client.get(QUOTES, params={"sourceAmount": "10"})
    client.headers["Authorization"] = operator
    assert anonymous.status_code == 401
    assert anonymous.json()["type"] == "/problems/authentication-required"
    settings = make_settings(database_url)
    as_wallet = client.get(QUOTES, params={"sourceAmount": "10"}, headers=bearer(wallet_token(settings, WALLET)))
    assert as_wallet.status_code == 200, as_wallet.text


def test_quotes_are_rate_limited_per_client_like_session_creation(
    database_url: str, healthy: Emulator, factory: sessionmaker[Session]
) -> None:
    settings = make_settings(
        database_url, stripe_api_base=healthy.url, stripe_secret_key=API_KEY, rate_limits="quote=2/60,api_key=3/60"
    )
    buyer = bearer(wallet_token(settings, WALLET))
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=buyer) as client:
        answers = [client.get(QUOTES, params={"sourceAmount": "10"}) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].json()["type"] == "/problems/rate-limited"
        assert "retry-after" in answers[2].headers
        # Its own bucket: quoting does not use up the buyer's session creations.
        assert client.post(SESSIONS, json=VALID).status_code == 201
    # A dApp's backend quotes for all its buyers: held to its key's ceiling, not to one client's quote rule.
    dapp = bearer(api_key(factory))
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=dapp) as client:
        answers = [client.get(QUOTES, params={"sourceAmount": "10"}) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]


def test_without_stripe_a_quote_is_503_not_configured(database_url: str, factory: sessionmaker[Session]) -> None:
    settings = make_settings(database_url, stripe_secret_key=None)
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=bearer(api_key(factory))) as client:
        response = client.get(QUOTES, params={"sourceAmount": "10"})
    assert response.status_code == 503
    assert response.json()["type"] == "/problems/stripe-not-configured"


def fulfil_through_a_webhook(client: TestClient, emulator: Emulator, stripe_session_id: str) -> dict[str, Any]:
    """Drive the emulator's session to fulfillment_complete and deliver its object as Stripe's signed webhook."""
    emulator.advance(stripe_session_id, "fulfillment_complete")
    obj: dict[str, Any] = emulator.sdk().raw_request("get", f"/v1/crypto/onramp_sessions/{stripe_session_id}").data
    payload = event_payload(obj)
    answer = client.post("/api/v1/webhooks/stripe", content=payload, headers={"Stripe-Signature": sign(payload)})
    assert answer.status_code == 200, answer.text
    return obj


def test_a_session_keeps_its_quote_and_the_slippage_is_observed_once_fulfilled(
    client: TestClient, healthy: Emulator, factory: sessionmaker[Session]
) -> None:
    quote = client.get(QUOTES, params={"sourceAmount": "100.00"}).json()
    assert quote["destinationAmount"] == "98.49"
    # The buyer saw a quote a little better than what Stripe will settle (the market moved).
    body = {**VALID, "quotedDestinationAmount": "99.00"}
    created = client.post(SESSIONS, json=body, headers={"Idempotency-Key": "quoted-1"})
    assert created.status_code == 201, created.text
    assert created.json()["quotedDestinationAmount"] == "99.00"
    # The quote is part of the request: the same key with another quote is another request.
    other = client.post(
        SESSIONS, json={**body, "quotedDestinationAmount": "98.49"}, headers={"Idempotency-Key": "quoted-1"}
    )
    assert other.status_code == 409
    replay = client.post(SESSIONS, json=body, headers={"Idempotency-Key": "quoted-1"})
    assert replay.headers["idempotent-replayed"] == "true"
    session_id = created.json()["id"]
    fetched = client.get(f"{SESSIONS}/{session_id}").json()
    assert fetched["quotedDestinationAmount"] == "99.00"
    assert [item["quotedDestinationAmount"] for item in client.get(SESSIONS).json()["data"]] == ["99.00"]
    assert sample(client, "musdpay_onramp_quote_slippage_ratio_count", direction="short") == 0

    settled = fulfil_through_a_webhook(client, healthy, created.json()["stripeSessionId"])
    assert settled["transaction_details"]["destination_amount"] == "98.49"
    after = client.get(f"{SESSIONS}/{session_id}").json()
    assert after["status"] == "fulfillment_complete"
    assert (after["quotedDestinationAmount"], after["transactionDetails"]["destinationAmount"]) == ("99.00", "98.49")
    expected = quote_slippage(Decimal("99.00"), Decimal("98.49"))
    assert expected is not None
    assert sample(client, "musdpay_onramp_quote_slippage_ratio_count", direction="short") == 1
    assert float(expected) == pytest.approx(0.00515, abs=1e-5)
    assert sample(client, "musdpay_onramp_quote_slippage_ratio_sum", direction="short") == pytest.approx(
        float(expected)
    )
    assert sample(client, "musdpay_onramp_quote_slippage_ratio_bucket", direction="short", le="0.005") == 0
    assert sample(client, "musdpay_onramp_quote_slippage_ratio_bucket", direction="short", le="0.01") == 1
    # The same event again changes nothing, and a session created without a quote observes nothing.
    fulfil_again = client.post(SESSIONS, json={**VALID, "sourceAmount": "50.00"})
    assert fulfil_again.json()["quotedDestinationAmount"] is None
    fulfil_through_a_webhook(client, healthy, fulfil_again.json()["stripeSessionId"])
    assert sample(client, "musdpay_onramp_quote_slippage_ratio_count", direction="short") == 1
    assert count_rows(factory) == 2


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "1e3", "1." + "1" * 19, True, "9" * 13])
def test_a_malformed_quote_is_refused(client: TestClient, factory: sessionmaker[Session], bad: object) -> None:
    response = client.post(SESSIONS, json={**VALID, "quotedDestinationAmount": bad})
    assert response.status_code == 422, response.text
    assert any(e["field"] == "body.quotedDestinationAmount" for e in response.json()["errors"])
    assert count_rows(factory) == 0


def test_on_chain_slippage_is_observed_when_a_delivery_is_verified(rig: DeliveryRig) -> None:
    wallet = new_wallet()
    tx = rig.chain.transfer_musd(wallet, units("100"))  # more than Stripe reported: negative slippage
    rig.paid_session("98.50", wallet=wallet, transaction_id=tx)
    short = new_wallet()
    short_tx = rig.chain.transfer_musd(short, units("90"))  # a mismatch is not verified: not observed
    rig.paid_session("98.50", wallet=short, transaction_id=short_tx)
    rig.run(rig.worker().run_once())
    assert rig.metric("musdpay_delivery_total", mode="onramp", outcome="verified") == 1
    assert rig.metric("musdpay_delivery_slippage_amount_count", direction="over") == 1
    assert rig.metric("musdpay_delivery_slippage_amount_count", direction="short") == 0
    assert rig.metric("musdpay_delivery_slippage_amount_bucket", direction="over", le="1.0") == 0
    assert rig.metric("musdpay_delivery_slippage_amount_bucket", direction="over", le="10.0") == 1
