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
    "SessionOut",
    "SessionPage",
    "TransactionDetailsOut",
    "normalize_wallet_address",
    "parse_amount",
]

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_AMOUNT = re.compile(r"^[0-9]+(\.[0-9]{1,2})?$")
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


class _CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CreateSessionRequest(_CamelModel):
    wallet_address: str = Field(description="EVM address on Mezo that receives the MUSD (EIP-55 if mixed case)")
    source_amount: Decimal = Field(description='Fiat amount to spend, at most 2 decimal places, e.g. "100.00"')
    source_currency: str = Field(default="usd", max_length=8)
    destination_currency: str = Field(default="musd", max_length=16)
    destination_network: str = Field(default="mezo", max_length=32)

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

    @field_validator("source_currency", "destination_currency", "destination_network", mode="before")
    @classmethod
    def _code(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value.strip().lower()

    def fingerprint_fields(self) -> dict[str, str]:
        return {
            "walletAddress": self.wallet_address,
            "sourceAmount": format(self.source_amount.quantize(Decimal("0.01")), "f"),
            "sourceCurrency": self.source_currency,
            "destinationCurrency": self.destination_currency,
            "destinationNetwork": self.destination_network,
        }


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
    livemode: bool
    created_at: datetime
    updated_at: datetime
    delivery: DeliveryOut | None = Field(
        default=None, description="The MUSD delivery, once the session is fulfilled; null before"
    )


class SessionPage(_CamelModel):
    data: list[SessionOut]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next (older) page")
