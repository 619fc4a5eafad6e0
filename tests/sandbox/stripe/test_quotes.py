"""`GET /v1/crypto/onramp/quotes` in Stripe's shape, priced like the emulator's sessions settle, through the SDK."""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe

from sandbox.stripe.config import EmulatorConfig
from sandbox.stripe.networks import NETWORK_CURRENCIES, NETWORKS
from sandbox.stripe.pricing import quote_from_source
from tests.sandbox.stripe.support import Sandbox

QUOTES = "/v1/crypto/onramp/quotes"
LINE_KEYS = {"id", "destination_amount", "destination_currency", "destination_network", "fees", "source_total_amount"}


def test_the_default_quote_covers_every_network_in_stripes_shape(emu: Sandbox) -> None:
    quotes = emu.get(QUOTES)
    assert set(quotes) == {
        "id", "object", "destination_network_quotes", "livemode", "rate_fetched_at", "source_amount", "source_currency",
    }  # fmt: skip
    assert quotes["object"] == "crypto.onramp.quotes"
    assert len(quotes["id"]) == 64
    assert int(quotes["id"], 16) >= 0
    assert (quotes["source_amount"], quotes["source_currency"], quotes["livemode"]) == ("100.00", "usd", False)
    assert isinstance(quotes["rate_fetched_at"], float)
    by_network = quotes["destination_network_quotes"]
    assert "base_network" in by_network  # Stripe's key for Base, as in its session object
    assert "base" not in by_network
    for network in NETWORKS:
        lines = by_network["base_network" if network == "base" else network]
        assert [line["destination_currency"] for line in lines] == list(NETWORK_CURRENCIES[network])
        for line in lines:
            assert set(line) == LINE_KEYS
            assert line["destination_network"] == network
            assert set(line["fees"]) == {"network_fee_monetary", "transaction_fee_monetary"}
            assert line["id"] != quotes["id"]


def test_a_quote_is_what_a_session_of_that_amount_settles_at(emu: Sandbox) -> None:
    quotes = emu.get(QUOTES, source_amount="250.00", destination_currencies=["musd"], destination_networks=["mezo"])
    by_network = quotes["destination_network_quotes"]
    assert [key for key, lines in by_network.items() if lines] == ["mezo"]
    [line] = by_network["mezo"]
    config = EmulatorConfig()
    expected = quote_from_source(
        Decimal("250.00"), "usd", "musd", fee_rate=config.transaction_fee_rate, network_fee=config.network_fee
    )
    assert line == {
        "id": line["id"],
        "destination_amount": str(expected.destination_amount),
        "destination_currency": "musd",
        "destination_network": "mezo",
        "fees": {
            "network_fee_monetary": str(expected.network_fee),
            "transaction_fee_monetary": str(expected.transaction_fee),
        },
        "source_total_amount": "250.00",  # the emulator's fees are inside the amount (quotes.py)
    }
    assert line["destination_amount"] == "246.24"
    session = emu.create_mezo(source_amount="250.00")
    assert emu.advance(session["id"], "fulfillment_processing").status_code == 200
    settled = emu.retrieve(session["id"])["transaction_details"]
    assert settled["destination_amount"] == line["destination_amount"]
    assert settled["fees"] == {"network_fee_amount": "0.01", "transaction_fee_amount": "3.75"}


def test_a_destination_amount_is_quoted_back_to_fiat(emu: Sandbox) -> None:
    quotes = emu.get(QUOTES, destination_amount="50", destination_currencies=["usdc"], destination_networks=["base"])
    [line] = quotes["destination_network_quotes"]["base_network"]
    assert (line["destination_amount"], line["destination_currency"], line["destination_network"]) == (
        "50",
        "usdc",
        "base",
    )
    paid = Decimal(line["source_total_amount"])
    fees = line["fees"]
    assert paid - Decimal(fees["transaction_fee_monetary"]) - Decimal(fees["network_fee_monetary"]) >= Decimal(50)
    assert quotes["source_amount"] == line["source_total_amount"]


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"source_amount": "10", "destination_amount": "5"}, "crypto_onramp_invalid_source_destination_pair", None),
        ({"destination_amount": "5", "destination_currencies": ["musd", "usdc"]}, None, "destination_amount"),
        ({"source_amount": "10", "destination_currencies": ["btc"], "destination_networks": ["mezo"]}, None, None),
        ({"source_amount": "0.50"}, "amount_too_small", "source_amount"),
        ({"source_amount": "1.001"}, None, "source_amount"),
        ({"source_currency": "jpy"}, None, "source_currency"),
        ({"destination_networks": ["mars"]}, None, "destination_networks[0]"),
        ({"wallet_address": "0x00"}, "parameter_unknown", "wallet_address"),
    ],
)
def test_bad_parameters_are_stripes_400s(
    emu: Sandbox, params: dict[str, object], code: str | None, param: str | None
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        emu.get(QUOTES, **params)
    assert raised.value.http_status == 400
    error = raised.value.json_body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param


def test_a_disabled_onramp_quotes_nothing(emu: Sandbox) -> None:
    emu.set_faults(onramp_unavailable="crypto_onramp_disabled")
    with pytest.raises(stripe.InvalidRequestError) as raised:
        emu.get(QUOTES, source_amount="10")
    assert (raised.value.http_status, raised.value.code) == (400, "crypto_onramp_disabled")
    emu.set_faults(down=True)
    with pytest.raises(stripe.APIError) as down:
        emu.get(QUOTES, source_amount="10")
    assert down.value.http_status == 503
