"""Request and response bodies of the onramp API (JSON in camelCase for the JS dApp)."""

from __future__ import annotations

import functools
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from eth_utils.address import to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from payment.core.config import DeliveryMode
from payment.delivery.status import DeliveryStatus
from payment.onramp.status import SessionStatus

__all__ = [
    "CreateSessionRequest",
    "QuoteFeesOut",
    "QuoteOut",
    "SessionOut",
    "SessionPage",
    "TransactionDetailsOut",
    "normalize_wallet_address",
    "parse_amount",
    "parse_crypto_amount",
]

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_AMOUNT = re.compile(r"^[0-9]+(\.[0-9]{1,2})?$")
# A crypto amount as Stripe writes one: up to 18 decimal places (ETH's precision), at most 30 significant digits.
_CRYPTO_AMOUNT = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,18})?$")
_ZERO_ADDRESS = "0x" + "0" * 40


def normalize_wallet_address(value: str) -> str:
    """An EVM address in EIP-55 form; mixed case must already be a valid checksum."""
    if not _ADDRESS.fullmatch(value):
        raise ValueError("must be a 0x-prefixed 20-byte hex address")
    lower = value.lower()
    if lower == _ZERO_ADDRESS:
        raise ValueError("must not be the zero address")
    checksummed = _checksummed(lower)
    body = value[2:]
    if body != body.lower() and body != body.upper() and value != checksummed:
        raise ValueError("has an invalid EIP-55 checksum (check the letter case)")
    return checksummed


@functools.lru_cache(maxsize=4096)  # a keccak hash per call; a dApp's buyers come back with the same wallets
def _checksummed(lower: str) -> str:
    return str(to_checksum_address(lower))


def parse_amount(value: Any) -> Decimal:
    """An exact decimal with at most two places, from a JSON string ("25.50") or number (25.5)."""
    if isinstance(value, bool) or value is None:
        raise ValueError('must be a decimal amount such as "25.00"')
    if isinstance(value, int | float):
        # repr of a float is the shortest decimal that round-trips: 25.5 -> "25.5", never 25.4999...
        text = repr(value) if isinstance(value, float) else str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError('must be a decimal amount such as "25.00"')
    if not _AMOUNT.fullmatch(text):
        raise ValueError('must be a positive decimal with at most 2 decimal places, such as "25.00"')
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already excludes these
        raise ValueError("is not a decimal number") from exc


def parse_crypto_amount(value: Any) -> Decimal:
    """A positive exact decimal of the destination currency ("98.49"), from a JSON string or number."""
    if isinstance(value, bool) or value is None:
        raise ValueError('must be a decimal amount such as "98.49"')
    if isinstance(value, int | float):
        text = repr(value) if isinstance(value, float) else str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError('must be a decimal amount such as "98.49"')
    if not _CRYPTO_AMOUNT.fullmatch(text):
        raise ValueError('must be a positive decimal with at most 18 decimal places, such as "98.49"')
    amount = Decimal(text)
    if amount <= 0:
        raise ValueError("must be greater than 0")
    return amount


class _CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CreateSessionRequest(_CamelModel):
    wallet_address: str = Field(description="EVM address on Mezo that receives the MUSD (EIP-55 if mixed case)")
    source_amount: Decimal = Field(description='Fiat amount to spend, at most 2 decimal places, e.g. "100.00"')
    source_currency: str = Field(default="usd", max_length=8)
    destination_currency: str = Field(default="musd", max_length=16)
    destination_network: str = Field(default="mezo", max_length=32)
    quoted_destination_amount: Decimal | None = Field(
        default=None,
        description="The destinationAmount of the quote shown to the buyer (GET /api/v1/onramp/quotes), kept with "
        'the session to measure slippage, e.g. "98.49"',
    )

    @field_validator("wallet_address", mode="before")
    @classmethod
    def _wallet(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return normalize_wallet_address(value.strip())

    @field_validator("source_amount", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> Decimal:
        return parse_amount(value)

    @field_validator("quoted_destination_amount", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Decimal | None:
        return None if value is None else parse_crypto_amount(value)

    @field_validator("source_currency", "destination_currency", "destination_network", mode="before")
    @classmethod
    def _code(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value.strip().lower()

    def fingerprint_fields(self) -> dict[str, str]:
        fields = {
            "walletAddress": self.wallet_address,
            "sourceAmount": format(self.source_amount.quantize(Decimal("0.01")), "f"),
            "sourceCurrency": self.source_currency,
            "destinationCurrency": self.destination_currency,
            "destinationNetwork": self.destination_network,
        }
        # Only when given, so the fingerprints of requests without a quote are what they were before quotes.
        if self.quoted_destination_amount is not None:
            fields["quotedDestinationAmount"] = format(self.quoted_destination_amount.normalize(), "f")
        return fields


class TransactionDetailsOut(_CamelModel):
    transaction_id: str | None = Field(description="Hash of the MUSD transfer on Mezo, once Stripe sends it")
    destination_amount: Decimal | None
    network_fee_amount: Decimal | None
    transaction_fee_amount: Decimal | None


class DeliveryOut(_CamelModel):
    mode: DeliveryMode = Field(description="onramp: Stripe delivers and we verify; treasury: we send from our treasury")
    status: DeliveryStatus
    tx_hash: str | None = Field(description="The MUSD transfer on Mezo (checked, or sent by our treasury)")
    confirmations: int
    expected_amount: Decimal | None = Field(description="MUSD owed to the wallet, after fees")
    delivered_amount: Decimal | None = Field(description="MUSD the transfer paid to the wallet, as read on chain")
    verified_at: datetime | None
    reason: str | None = Field(description="Why the delivery is not (yet) verified")


class SessionOut(_CamelModel):
    id: str
    stripe_session_id: str | None
    client_secret: str | None = Field(description="Only returned to the session's creator; null otherwise")
    status: SessionStatus
    wallet_address: str
    source_amount: Decimal
    source_currency: str
    destination_currency: str
    destination_network: str
    transaction_details: TransactionDetailsOut
    quoted_destination_amount: Decimal | None = Field(
        default=None, description="The quote's destination amount the dApp passed at creation; null if none"
    )
    livemode: bool
    created_at: datetime
    updated_at: datetime
    delivery: DeliveryOut | None = Field(
        default=None, description="The MUSD delivery, once the session is fulfilled; null before"
    )


class QuoteFeesOut(_CamelModel):
    network_fee_amount: Decimal = Field(description="Stripe's network fee, in the source currency")
    transaction_fee_amount: Decimal = Field(description="Stripe's transaction fee, in the source currency")


class QuoteOut(_CamelModel):
    """Stripe's estimate for one (currency, network): what the buyer pays and receives if they buy now."""

    stripe_quote_id: str = Field(description="Stripe's id of this quote (of the destination's line)")
    source_amount: Decimal = Field(description="The fiat amount asked about")
    source_currency: str
    source_total_amount: Decimal = Field(description="Fiat the buyer is charged in all, fees included")
    destination_amount: Decimal = Field(
        description="Crypto the wallet would receive; pass it as quotedDestinationAmount when creating the session"
    )
    destination_currency: str
    destination_network: str
    fees: QuoteFeesOut
    rate_fetched_at: datetime = Field(description="When Stripe priced the quote; it is an estimate, not a promise")
    livemode: bool


class SessionPage(_CamelModel):
    data: list[SessionOut]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next (older) page")
