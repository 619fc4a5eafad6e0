"""What the emulated onramp can deliver: networks, their currencies, wallet formats and mock prices.

Stripe's real networks and currencies, plus Mezo with MUSD, which this emulator pretends Stripe supports.
Mezo is an EVM chain, so its wallet addresses are 0x + 40 hex digits like Ethereum's.

The onramp object names wallets by a "wallet key" that is the network name except for Base
(`base_network`); Mezo has no key in Stripe's object at all, so its address only shows up in
`transaction_details.wallet_address` (see sessions.py).
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = [
    "CURRENCIES",
    "CURRENCY_PLACES",
    "MEZO",
    "NETWORKS",
    "NETWORK_BY_WALLET_KEY",
    "NETWORK_CURRENCIES",
    "SOURCE_CURRENCY_USD",
    "USD_PRICES",
    "WALLET_KEYS",
    "valid_address",
]

MEZO = "mezo"

# network -> currencies Stripe delivers on it (first is the default when the client names none)
NETWORK_CURRENCIES: dict[str, tuple[str, ...]] = {
    "bitcoin": ("btc",),
    "ethereum": ("eth", "usdc"),
    "solana": ("sol", "usdc"),
    "polygon": ("pol", "usdc"),
    "stellar": ("xlm", "usdc"),
    "avalanche": ("avax", "usdc"),
    "base": ("eth", "usdc"),
    "optimism": ("eth", "usdc"),
    "worldchain": ("wld", "eth", "usdc"),
    "sui": ("sui", "usdc"),
    "celo": ("celo", "usdc"),
    "tempo": ("usdc",),
    MEZO: ("musd",),
}
NETWORKS: tuple[str, ...] = tuple(NETWORK_CURRENCIES)
CURRENCIES: tuple[str, ...] = tuple(dict.fromkeys(c for cs in NETWORK_CURRENCIES.values() for c in cs))

# Keys of `transaction_details.wallet_addresses` in Stripe's object (fixture order), minus
# `destination_tags`, which is a nested hash handled on its own.
WALLET_KEYS: tuple[str, ...] = (
    "avalanche",
    "base_network",
    "bitcoin",
    "ethereum",
    "optimism",
    "polygon",
    "solana",
    "stellar",
    "worldchain",
    "sui",
    "tempo",
    "celo",
)
NETWORK_BY_WALLET_KEY: dict[str, str] = {key: key for key in WALLET_KEYS} | {
    "base_network": "base",
    MEZO: MEZO,
}

_EVM = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ADDRESS_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "bitcoin": (
        re.compile(r"^(?:[13][1-9A-HJ-NP-Za-km-z]{25,34}|(?:bc|tb|bcrt)1[02-9ac-hj-np-z]{11,71})$"),
        "a base58 or bech32 bitcoin address",
    ),
    "solana": (re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$"), "a base58 solana address"),
    "stellar": (re.compile(r"^G[A-Z2-7]{55}$"), "a stellar account id (G...)"),
    "sui": (re.compile(r"^0x[0-9a-fA-F]{64}$"), "0x followed by 64 hex digits"),
}


def valid_address(network: str, address: str) -> str | None:
    """None when `address` fits `network`, else a description of the expected format."""
    pattern, expected = _ADDRESS_FORMATS.get(network, (_EVM, "0x followed by 40 hex digits"))
    return None if pattern.match(address) else expected


# Mock market: USD per unit of each currency, and the decimals a destination amount is quoted with.
USD_PRICES: dict[str, Decimal] = {
    "musd": Decimal(1),
    "usdc": Decimal(1),
    "btc": Decimal(60000),
    "eth": Decimal(3000),
    "sol": Decimal(150),
    "pol": Decimal("0.5"),
    "xlm": Decimal("0.1"),
    "avax": Decimal(30),
    "wld": Decimal(2),
    "sui": Decimal(1),
    "celo": Decimal("0.5"),
}
CURRENCY_PLACES: dict[str, int] = {"musd": 2, "usdc": 2, "btc": 8, "xlm": 7}  # others: 8
SOURCE_CURRENCY_USD: dict[str, Decimal] = {"usd": Decimal(1), "eur": Decimal("1.08")}
