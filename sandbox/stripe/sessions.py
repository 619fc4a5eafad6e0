"""Crypto onramp sessions: validating create parameters, building the object, and its status machine.

Nothing here knows HTTP or asyncio: `SessionFactory.create` takes parsed form params and returns a record
(or raises the StripeError Stripe would answer with); `transition_path` and `fill_fulfillment` are the rules
that lifecycle.py applies when a session moves.

The object has exactly the keys and nesting of Stripe's own fixture. Stripe's `wallet_addresses` hash has
a fixed key set without Mezo, so a Mezo address lives only on the record and in
`transaction_details.wallet_address`, the address the crypto is actually sent to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sandbox.stripe.config import EmulatorConfig
from sandbox.stripe.errors import invalid_request
from sandbox.stripe.forms import Params, check_enum, missing
from sandbox.stripe.ids import new_id, new_secret
from sandbox.stripe.networks import (
    CURRENCIES,
    MEZO,
    NETWORK_BY_WALLET_KEY,
    NETWORK_CURRENCIES,
    NETWORKS,
    WALLET_KEYS,
    valid_address,
)
from sandbox.stripe.pricing import quote_from_destination, quote_from_source

__all__ = [
    "FULFILLMENT_COMPLETE",
    "FULFILLMENT_PROCESSING",
    "INITIALIZED",
    "REJECTED",
    "REQUIRES_PAYMENT",
    "STATUSES",
    "TERMINAL",
    "SessionFactory",
    "SessionRecord",
    "TransitionError",
    "fill_fulfillment",
    "transition_path",
]

INITIALIZED = "initialized"
REQUIRES_PAYMENT = "requires_payment"
FULFILLMENT_PROCESSING = "fulfillment_processing"
FULFILLMENT_COMPLETE = "fulfillment_complete"
REJECTED = "rejected"
_PROGRESSION = (INITIALIZED, REQUIRES_PAYMENT, FULFILLMENT_PROCESSING, FULFILLMENT_COMPLETE)
STATUSES = (*_PROGRESSION, REJECTED)
TERMINAL = frozenset({FULFILLMENT_COMPLETE, REJECTED})

SOURCE_CURRENCIES = ("usd", "eur")
SETTLEMENT_SPEEDS = ("instant", "standard")
MIN_SOURCE_AMOUNT = Decimal("1.00")
# Used at fulfilment when the client fixed no amount (a real customer would type one in the widget).
DEFAULT_SOURCE_AMOUNT = Decimal("100.00")

_CREATE_PARAMS = frozenset(
    {
        "wallet_addresses",
        "source_amount",
        "source_currency",
        "destination_amount",
        "destination_currency",
        "destination_currencies",
        "destination_network",
        "destination_networks",
        "lock_wallet_address",
        "customer_ip_address",
        "metadata",
        "settlement_speed",
    }
)


@dataclass(slots=True)
class SessionRecord:
    obj: dict[str, Any]  # the public object, served as is
    wallet_network: str | None  # network of transaction_details.wallet_address
    transaction_id: str | None = None  # set once, by the fulfiller
    lock: asyncio.Lock | None = None  # serialises advances of this session (made on first advance)

    @property
    def id(self) -> str:
        return str(self.obj["id"])

    @property
    def status(self) -> str:
        return str(self.obj["status"])


class TransitionError(ValueError):
    pass


def transition_path(current: str, target: str) -> list[str]:
    """The statuses a session passes through from `current` to `target`, one event each."""
    if target not in STATUSES:
        raise TransitionError(f"Unknown status '{target}': must be one of {', '.join(STATUSES)}")
    if current in TERMINAL:
        raise TransitionError(f"Session is {current}, a terminal status; it cannot move to {target}")
    if target == REJECTED:
        return [REJECTED]
    here, there = _PROGRESSION.index(current), _PROGRESSION.index(target)
    if there <= here:
        raise TransitionError(f"Session is {current}; it can only move forward, not to {target}")
    return list(_PROGRESSION[here + 1 : there + 1])


class SessionFactory:
    def __init__(self, config: EmulatorConfig) -> None:
        self._blocked = tuple(ipaddress.ip_network(n, strict=False) for n in config.blocked_ip_networks)
        self._fees = {"fee_rate": config.transaction_fee_rate, "network_fee": config.network_fee}

    def create(self, params: Params) -> SessionRecord:
        params.reject_unknown(_CREATE_PARAMS)
        wallets, stellar_tag = _wallet_addresses(params)
        source_currency = params.enum("source_currency", SOURCE_CURRENCIES) or "usd"
        source_amount = params.decimal("source_amount", places=2)
        destination_amount = params.decimal("destination_amount", places=18)
        if source_amount is not None and destination_amount is not None:
            raise invalid_request(
                "You may only specify one of these parameters: source_amount, destination_amount.",
                code="parameters_exclusive",
                param="destination_amount",
            )
        if source_amount is not None and source_amount < MIN_SOURCE_AMOUNT:
            raise invalid_request(
                f"source_amount must be at least {MIN_SOURCE_AMOUNT} {source_currency}.",
                code="amount_too_small",
                param="source_amount",
            )
        networks = _enum_array(params, "destination_networks", NETWORKS)
        currencies = _enum_array(params, "destination_currencies", CURRENCIES)
        network = params.enum("destination_network", NETWORKS)
        currency = params.enum("destination_currency", CURRENCIES)
        if network is not None and networks is not None and network not in networks:
            raise invalid_request(
                "destination_network must be one of destination_networks.",
                code="parameter_invalid_string",
                param="destination_network",
            )
        if currency is not None and currencies is not None and currency not in currencies:
            raise invalid_request(
                "destination_currency must be one of destination_currencies.",
                code="parameter_invalid_string",
                param="destination_currency",
            )
        if currency is not None and network is not None and currency not in NETWORK_CURRENCIES[network]:
            raise invalid_request(
                f"{currency} cannot be delivered on {network}.",
                code="parameter_invalid_string",
                param="destination_currency",
            )
        if destination_amount is not None:
            if currency is None:
                raise missing("destination_currency")
            if network is None:
                raise missing("destination_network")
            if destination_amount == 0:
                raise invalid_request(
                    "destination_amount must be greater than 0.",
                    code="amount_too_small",
                    param="destination_amount",
                )
        lock_wallet = params.boolean("lock_wallet_address") or False
        if lock_wallet and not wallets:
            raise missing("wallet_addresses")
        ip = params.ip_address("customer_ip_address")
        metadata = _metadata(params)
        settlement_speed = params.enum("settlement_speed", SETTLEMENT_SPEEDS) or "instant"
        if ip is not None and any(ip in blocked for blocked in self._blocked):
            raise invalid_request(
                f"The crypto onramp is not available in the customer's country (customer_ip_address {ip}).",
                code="crypto_onramp_unsupported_country",
                param="customer_ip_address",
            )

        # Stripe fills the choice lists with everything it supports when the client leaves them out.
        if networks is None:
            networks = [n for n in NETWORKS if currencies is None or _delivers_any(n, currencies)]
        if currencies is None:
            currencies = [c for c in CURRENCIES if any(c in NETWORK_CURRENCIES[n] for n in networks)]
        wallet_network = _chosen_wallet_network(wallets, network)

        quoted: str | None = None
        if destination_amount is not None:
            quoted = str(destination_amount)
        elif source_amount is not None and currency is not None and network is not None:
            # Stripe computes this default; it is the same amount fulfilment delivers later.
            quote = quote_from_source(source_amount, source_currency, currency, **self._fees)
            quoted = str(quote.destination_amount)

        session_id = new_id("cos_")
        wallet_addresses: dict[str, Any] = {key: None for key in WALLET_KEYS}
        wallet_addresses["destination_tags"] = {"stellar": stellar_tag}
        for key, address in wallets.items():
            if key != MEZO:
                wallet_addresses[key] = address
        obj: dict[str, Any] = {
            "id": session_id,
            "object": "crypto.onramp_session",
            "client_secret": f"{session_id}_secret_{new_secret(25)}",
            "created": int(time.time()),
            "kyc_details_provided": False,
            "livemode": False,
            "metadata": metadata,
            "redirect_url": None,
            "status": INITIALIZED,
            "transaction_details": {
                "destination_amount": quoted,
                "destination_currencies": currencies,
                "destination_currency": currency,
                "destination_network": network,
                "destination_networks": networks,
                "fees": {"network_fee_amount": None, "transaction_fee_amount": None},
                "lock_wallet_address": lock_wallet,
                "settlement_speed": settlement_speed,
                "source_amount": None if source_amount is None else str(source_amount),
                "source_currency": source_currency,
                "transaction_id": None,
                "wallet_address": None if wallet_network is None else wallets[_wallet_key(wallet_network)],
                "wallet_addresses": wallet_addresses,
            },
        }
        return SessionRecord(obj=obj, wallet_network=wallet_network)


def fill_fulfillment(record: SessionRecord, config: EmulatorConfig) -> None:
    """Settle amounts and fees as the session enters fulfillment_processing."""
    details = record.obj["transaction_details"]
    network, currency = _settled_route(record)
    fees = {"fee_rate": config.transaction_fee_rate, "network_fee": config.network_fee}
    source_currency = details["source_currency"]
    if details["source_amount"] is None and details["destination_amount"] is not None:
        quote = quote_from_destination(Decimal(details["destination_amount"]), source_currency, currency, **fees)
    else:
        source = Decimal(details["source_amount"] or DEFAULT_SOURCE_AMOUNT)
        quote = quote_from_source(source, source_currency, currency, **fees)
    details["source_amount"] = str(quote.source_amount)
    details["destination_amount"] = str(quote.destination_amount)
    details["destination_network"] = network
    details["destination_currency"] = currency
    details["fees"] = {
        "network_fee_amount": str(quote.network_fee),
        "transaction_fee_amount": str(quote.transaction_fee),
    }
    if details["wallet_address"] is None:
        address = details["wallet_addresses"].get(_wallet_key(network))
        if address is not None:
            details["wallet_address"] = address
            record.wallet_network = network


def _settled_route(record: SessionRecord) -> tuple[str, str]:
    """Network and currency the customer ends up buying: what the client fixed, else the first fit."""
    details = record.obj["transaction_details"]
    if details["destination_network"] is not None:
        networks = [details["destination_network"]]
    elif record.wallet_network is not None:
        networks = [record.wallet_network]
    else:
        networks = details["destination_networks"]
    if details["destination_currency"] is not None:
        currencies = [details["destination_currency"]]
    else:
        currencies = details["destination_currencies"]
    for network in networks:
        for currency in currencies:
            if currency in NETWORK_CURRENCIES[network]:
                return network, currency
    return MEZO, "musd"


def _wallet_addresses(params: Params) -> tuple[dict[str, str], str | None]:
    """`wallet_addresses[<key>]` validated per network; returns {wallet key: address} and the stellar tag."""
    raw = params.hash("wallet_addresses")
    if raw is None:
        return {}, None
    wallets: dict[str, str] = {}
    stellar_tag: str | None = None
    for key, value in raw.items():
        name = f"wallet_addresses[{key}]"
        if key == "destination_tags":
            tags = Params({"destination_tags": value}).string_hash("destination_tags") or {}
            for tag_key, tag in tags.items():
                if tag_key != "stellar":
                    raise invalid_request(
                        f"Received unknown parameter: {name}[{tag_key}]",
                        code="parameter_unknown",
                        param=f"{name}[{tag_key}]",
                    )
                stellar_tag = tag
            continue
        network = NETWORK_BY_WALLET_KEY.get(key)
        if network is None:
            raise invalid_request(f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
        address = Params({name: value}).string(name, required=True)
        assert address is not None
        expected = valid_address(network, address)
        if expected is not None:
            raise invalid_request(
                f"Invalid {network} wallet address '{address}': expected {expected}.",
                code="parameter_invalid_string",
                param=name,
            )
        wallets[key] = address
    return wallets, stellar_tag


def _wallet_key(network: str) -> str:
    return "base_network" if network == "base" else network


def _chosen_wallet_network(wallets: dict[str, str], network: str | None) -> str | None:
    """Which given wallet receives the crypto: the destination network's, else Mezo's, else a lone one."""
    if not wallets:
        return None
    if network is not None:
        return network if _wallet_key(network) in wallets else None
    if MEZO in wallets:
        return MEZO
    if len(wallets) == 1:
        return NETWORK_BY_WALLET_KEY[next(iter(wallets))]
    return None


def _delivers_any(network: str, currencies: list[str]) -> bool:
    return any(c in NETWORK_CURRENCIES[network] for c in currencies)


def _enum_array(params: Params, name: str, allowed: tuple[str, ...]) -> list[str] | None:
    values = params.array(name)
    if values is None:
        return None
    for i, value in enumerate(values):
        check_enum(value, f"{name}[{i}]", allowed)
    return list(dict.fromkeys(values))


_METADATA_MAX_KEYS = 50
_METADATA_MAX_KEY = 40
_METADATA_MAX_VALUE = 500


def _metadata(params: Params) -> dict[str, str]:
    raw = params.hash("metadata")
    if raw is None:
        return {}
    metadata: dict[str, str] = {}
    for key, value in raw.items():
        name = f"metadata[{key}]"
        if not isinstance(value, str):
            raise invalid_request(f"Invalid string: {name}", code="parameter_invalid_string", param=name)
        if len(key) > _METADATA_MAX_KEY or len(value) > _METADATA_MAX_VALUE:
            raise invalid_request(
                f"Metadata keys are limited to {_METADATA_MAX_KEY} characters and values to {_METADATA_MAX_VALUE}.",
                code="parameter_invalid_string",
                param=name,
            )
        if value:  # an empty value unsets the key
            metadata[key] = value
    if len(metadata) > _METADATA_MAX_KEYS:
        raise invalid_request(
            f"Metadata can have at most {_METADATA_MAX_KEYS} keys.", code="parameter_invalid_string", param="metadata"
        )
    return metadata
