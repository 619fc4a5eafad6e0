"""`GET /v1/crypto/onramp/quotes`: Stripe's Onramp Quotes API, priced by this emulator's pricing (pricing.py).

The object has Stripe's shape (`crypto.onramp.quotes`): an id, `destination_network_quotes` with one key per network
(Base's is `base_network`) holding a list of lines for the requested currencies, or null for a network not asked
about, `livemode`, `rate_fetched_at` (Unix seconds, a float) and the `source_amount` and `source_currency` quoted.
Each line: `id`, `destination_amount`, `destination_currency`, `destination_network`,
`fees: {network_fee_monetary, transaction_fee_monetary}` and `source_total_amount`.

One difference, on purpose: Stripe adds its fees on top of `source_amount`, while this emulator's pricing takes
them out of it (pricing.py's invariant, which its sessions settle with). So here `source_total_amount` equals
`source_amount`, and a quote is exactly what a session of that amount settles at (the mock prices never move).
A client that reads `source_total_amount` for what is charged and `destination_amount` for what is received is right
with both.

Parameters (Stripe's): `source_amount` (default 100.00) or `destination_amount` (then exactly one currency and
one network), `source_currency` (usd; eur too here), `destination_currencies[]`, `destination_networks[]`.
"""

from __future__ import annotations

import secrets
import time
from decimal import Decimal
from typing import Any

from sandbox.stripe.emulator import Emulator
from sandbox.stripe.errors import invalid_request
from sandbox.stripe.forms import Params, check_enum
from sandbox.stripe.networks import CURRENCIES, NETWORK_CURRENCIES, NETWORKS
from sandbox.stripe.pricing import Quote, quote_from_destination, quote_from_source
from sandbox.stripe.sessions import MIN_SOURCE_AMOUNT, SOURCE_CURRENCIES
from sandbox.stripe.wire import ApiCall, ApiHandler

__all__ = ["QUOTES_OBJECT", "build_quotes", "quotes_handler"]

QUOTES_OBJECT = "crypto.onramp.quotes"
DEFAULT_SOURCE_AMOUNT = Decimal("100.00")
_PARAMS = frozenset(
    {"source_amount", "source_currency", "destination_amount", "destination_currencies", "destination_networks"}
)


def quotes_handler(emulator: Emulator) -> ApiHandler:
    def handler(call: ApiCall) -> tuple[int, Any]:
        refusal = emulator.faults.onramp_refusal()  # a disabled onramp quotes nothing either
        if refusal is not None:
            raise refusal
        return 200, build_quotes(
            call.params,
            fee_rate=emulator.config.transaction_fee_rate,
            network_fee=emulator.config.network_fee,
        )

    return handler


def _quote_id() -> str:
    return secrets.token_hex(32)  # Stripe's quote ids are 64 hex digits, without a prefix


def _key(network: str) -> str:
    return "base_network" if network == "base" else network


def _choices(params: Params, name: str, allowed: tuple[str, ...]) -> list[str] | None:
    values = params.array(name)
    if values is None:
        return None
    for i, value in enumerate(values):
        check_enum(value, f"{name}[{i}]", allowed)
    return list(dict.fromkeys(values))


def build_quotes(params: Params, *, fee_rate: Decimal, network_fee: Decimal) -> dict[str, Any]:
    """The quotes object for these parameters (raises the StripeError Stripe would answer with)."""
    params.reject_unknown(_PARAMS)
    source_currency = params.enum("source_currency", SOURCE_CURRENCIES) or "usd"
    source_amount = params.decimal("source_amount", places=2)
    destination_amount = params.decimal("destination_amount", places=18)
    currencies = _choices(params, "destination_currencies", CURRENCIES)
    networks = _choices(params, "destination_networks", NETWORKS)
    if source_amount is not None and destination_amount is not None:
        raise invalid_request(
            "You may only specify one of these parameters: source_amount, destination_amount.",
            code="crypto_onramp_invalid_source_destination_pair",
            param="destination_amount",
        )
    if destination_amount is not None:
        if currencies is None or networks is None or len(currencies) != 1 or len(networks) != 1:
            raise invalid_request(
                "Specify exactly one entry for both destination currency and destination network when destination "
                "amount is specified.",
                code="crypto_onramp_quote_too_many_destination_currencies_and_networks",
                param="destination_amount",
            )
        if destination_amount <= 0:
            raise invalid_request(
                "destination_amount must be greater than 0.", code="amount_too_small", param="destination_amount"
            )
    elif source_amount is None:
        source_amount = DEFAULT_SOURCE_AMOUNT
    if source_amount is not None and source_amount < MIN_SOURCE_AMOUNT:
        raise invalid_request(
            f"source_amount must be at least {MIN_SOURCE_AMOUNT} {source_currency}.",
            code="amount_too_small",
            param="source_amount",
        )
    wanted_networks = networks if networks is not None else list(NETWORKS)
    lines: dict[str, list[dict[str, Any]]] = {}
    quoted_source: Decimal | None = None
    for network in wanted_networks:
        for currency in NETWORK_CURRENCIES[network]:
            if currencies is not None and currency not in currencies:
                continue
            fees = {"fee_rate": fee_rate, "network_fee": network_fee}
            if destination_amount is not None:
                quote = quote_from_destination(destination_amount, source_currency, currency, **fees)
            else:
                assert source_amount is not None
                quote = quote_from_source(source_amount, source_currency, currency, **fees)
            quoted_source = quote.source_amount
            lines.setdefault(_key(network), []).append(_line(quote, currency, network))
    if not lines:
        raise invalid_request(
            "None of the provided destination currency and network pairs are valid for the quote.",
            code="crypto_onramp_quote_invalid_destination_currencies_and_networks",
            param="destination_currencies",
        )
    return {
        "id": _quote_id(),
        "object": QUOTES_OBJECT,
        "destination_network_quotes": {_key(network): lines.get(_key(network)) for network in NETWORKS},
        "livemode": False,
        "rate_fetched_at": time.time(),
        "source_amount": str(source_amount if source_amount is not None else quoted_source),
        "source_currency": source_currency,
    }


def _line(quote: Quote, currency: str, network: str) -> dict[str, Any]:
    return {
        "id": _quote_id(),
        "destination_amount": str(quote.destination_amount),
        "destination_currency": currency,
        "destination_network": network,
        "fees": {
            "network_fee_monetary": str(quote.network_fee),
            "transaction_fee_monetary": str(quote.transaction_fee),
        },
        "source_total_amount": str(quote.source_amount),
    }
