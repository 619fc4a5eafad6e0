"""Fees and conversion of a fulfilment: fiat in, crypto out.

The fiat side is in cents; the fee is a rate on the fiat amount rounded half-up to cents plus a flat
network fee, both in the source currency, and the rest is converted at the mock price
(1 USD = 1 MUSD). Invariant kept by both directions: source = fees + (destination converted back).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal

from sandbox.stripe.networks import CURRENCY_PLACES, SOURCE_CURRENCY_USD, USD_PRICES

__all__ = ["Quote", "quote_from_destination", "quote_from_source"]

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Quote:
    source_amount: Decimal
    destination_amount: Decimal
    transaction_fee: Decimal
    network_fee: Decimal


def _rate(source_currency: str, destination_currency: str) -> Decimal:
    """Units of destination currency per unit of source currency."""
    return SOURCE_CURRENCY_USD[source_currency] / USD_PRICES[destination_currency]


def _exponent(currency: str) -> Decimal:
    return Decimal(1).scaleb(-CURRENCY_PLACES.get(currency, 8))


def quote_from_source(
    source_amount: Decimal,
    source_currency: str,
    destination_currency: str,
    *,
    fee_rate: Decimal,
    network_fee: Decimal,
) -> Quote:
    fee = (source_amount * fee_rate).quantize(CENT, rounding=ROUND_HALF_UP)
    net = max(source_amount - fee - network_fee, Decimal(0))
    converted = net * _rate(source_currency, destination_currency)
    # Round down: never deliver more than was paid for.
    destination = converted.quantize(_exponent(destination_currency), rounding=ROUND_DOWN)
    return Quote(source_amount, destination, fee, network_fee)


def quote_from_destination(
    destination_amount: Decimal,
    source_currency: str,
    destination_currency: str,
    *,
    fee_rate: Decimal,
    network_fee: Decimal,
) -> Quote:
    """The fiat amount that buys `destination_amount`; the transaction fee absorbs cent rounding."""
    rate = _rate(source_currency, destination_currency)
    net = (destination_amount / rate).quantize(CENT, rounding=ROUND_UP)
    source = ((net + network_fee) / (1 - fee_rate)).quantize(CENT, rounding=ROUND_UP)
    # Walk up by cents until the fee computed on `source` leaves enough (at most a step or two).
    while source - (source * fee_rate).quantize(CENT, rounding=ROUND_HALF_UP) - network_fee < net:
        source += CENT
    return Quote(source, destination_amount, source - net - network_fee, network_fee)
