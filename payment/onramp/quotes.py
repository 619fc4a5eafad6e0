"""Quotes: Stripe's estimate of what a fiat amount buys, shown by the dApp before Stripe's widget. Pure of HTTP.

One call to Stripe's `GET /v1/crypto/onramp/quotes` for the one destination (currency, network) the service
sells, and the line of the answer for it. A quote is an estimate, not a price lock: the buyer may get a little
more or less in the widget. The dApp passes the quote's `destinationAmount` back when it creates the session
(`quotedDestinationAmount`), and the difference with what Stripe settles is measured (docs/onramp.md, "Quotes").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from payment.core.config import Settings
from payment.core.problems import FieldError, UpstreamProblem, ValidationProblem
from payment.onramp.schemas import parse_amount
from payment.onramp.service import check_purchase
from payment.onramp.stripe_gateway import OnrampGateway

__all__ = ["Quote", "QuoteRequest", "get_quote", "parse_quote", "quote_request", "stripe_network_key"]


@dataclass(frozen=True)
class QuoteRequest:
    source_amount: Decimal
    source_currency: str
    destination_currency: str
    destination_network: str


@dataclass(frozen=True)
class Quote:
    stripe_quote_id: str
    source_amount: Decimal
    source_currency: str
    source_total_amount: Decimal
    destination_amount: Decimal
    destination_currency: str
    destination_network: str
    network_fee: Decimal
    transaction_fee: Decimal
    rate_fetched_at: datetime
    livemode: bool


def quote_request(
    settings: Settings,
    *,
    source_amount: str,
    source_currency: str,
    destination_currency: str,
    destination_network: str,
) -> QuoteRequest:
    """The query parameters checked like a session's body (amount bounds, allowed currencies and networks)."""
    try:
        amount = parse_amount(source_amount)
    except ValueError as exc:
        raise ValidationProblem([FieldError("query.sourceAmount", str(exc))]) from exc
    request = QuoteRequest(
        source_amount=amount,
        source_currency=source_currency.strip().lower(),
        destination_currency=destination_currency.strip().lower(),
        destination_network=destination_network.strip().lower(),
    )
    errors = check_purchase(
        settings,
        source_amount=request.source_amount,
        source_currency=request.source_currency,
        destination_currency=request.destination_currency,
        destination_network=request.destination_network,
        where="query",
    )
    if errors:
        raise ValidationProblem(errors)
    return request


async def get_quote(*, gateway: OnrampGateway | None, request: QuoteRequest) -> Quote:
    """Stripe's quote for `request`; Stripe's failures are the same problems as for a session (503, 504, 422)."""
    if gateway is None:
        raise UpstreamProblem(503, "stripe-not-configured", "Stripe is not configured on this service.")
    obj = await gateway.get_quotes_async(
        {
            "source_amount": format(request.source_amount.quantize(Decimal("0.01")), "f"),
            "source_currency": request.source_currency,
            "destination_currencies": [request.destination_currency],
            "destination_networks": [request.destination_network],
        }
    )
    return parse_quote(obj, request)


def stripe_network_key(network: str) -> str:
    """The key of `destination_network_quotes` for a network: its name, but Base is `base_network`."""
    return "base_network" if network == "base" else network


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"not an amount: {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {value!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not an amount: {value!r}")
    return amount


def parse_quote(obj: dict[str, Any], request: QuoteRequest) -> Quote:
    """The line of Stripe's quotes object for the requested currency and network; 502 if it has none."""
    lines = obj["destination_network_quotes"].get(stripe_network_key(request.destination_network)) or []
    line = next(
        (
            item
            for item in lines
            if isinstance(item, dict)
            and item.get("destination_currency") == request.destination_currency
            and item.get("destination_network") == request.destination_network
        ),
        None,
    )
    if line is None:
        raise UpstreamProblem(
            502,
            "stripe-unavailable",
            f"Stripe returned no quote for {request.destination_currency} on {request.destination_network}.",
        )
    fees = line.get("fees") or {}
    try:
        fetched = obj.get("rate_fetched_at")
        if isinstance(fetched, bool) or not isinstance(fetched, int | float):
            raise ValueError("rate_fetched_at")
        return Quote(
            stripe_quote_id=str(line.get("id") or obj.get("id") or ""),
            source_amount=_amount(obj.get("source_amount", format(request.source_amount, "f"))),
            source_currency=str(obj.get("source_currency") or request.source_currency),
            source_total_amount=_amount(line.get("source_total_amount")),
            destination_amount=_amount(line.get("destination_amount")),
            destination_currency=request.destination_currency,
            destination_network=request.destination_network,
            network_fee=_amount(fees.get("network_fee_monetary")),
            transaction_fee=_amount(fees.get("transaction_fee_monetary")),
            rate_fetched_at=datetime.fromtimestamp(float(fetched), UTC),
            livemode=bool(obj.get("livemode", False)),
        )
    except (ValueError, AttributeError, OverflowError, OSError) as exc:
        raise UpstreamProblem(502, "stripe-unavailable", "Stripe returned a malformed quote.") from exc
