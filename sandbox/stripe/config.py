"""Settings of one emulator instance.

The CLI builds an `EmulatorConfig` from its flags; tests build one directly. Nothing here reads the
environment: the emulator is a development stand-in and takes everything explicitly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = ["DEFAULT_API_VERSION", "DEFAULT_BLOCKED_IP_NETWORKS", "EmulatorConfig"]

# The API version this emulator speaks when the client sends no Stripe-Version header; it is also the
# version stamped on events. Same as the pinned version of the SDK the tests use.
DEFAULT_API_VERSION = "2026-10-28.endive"

# TEST-NET-3 (RFC 5737) never routes on the internet, so using it as "a region Stripe does not serve"
# cannot collide with a real customer address.
DEFAULT_BLOCKED_IP_NETWORKS: tuple[str, ...] = ("203.0.113.0/24",)


@dataclass
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 12111
    webhook_urls: list[str] = field(default_factory=list)  # endpoints registered at start
    webhook_secret: str | None = None  # whsec_...; generated (and printed by run) when urls come without one
    api_key: str | None = None  # if set only this key is accepted; otherwise any "sk_test_" key
    auto_advance: str | None = None  # target status each new session is driven to automatically, or None
    auto_advance_delay: float = 0.2  # seconds between automatic steps
    delivery_max_attempts: int = 8
    delivery_backoff_base: float = 0.5  # seconds, exponential with jitter, capped at delivery_backoff_cap
    delivery_timeout: float = 5.0
    delivery_backoff_cap: float = 60.0
    delivery_concurrency: int = 32  # webhook POSTs in flight at once, over all endpoints
    # Pricing of the fulfilment: fee on the fiat amount (rounded to cents) plus a flat network fee.
    transaction_fee_rate: Decimal = Decimal("0.015")
    network_fee: Decimal = Decimal("0.01")
    # Customers whose customer_ip_address falls in one of these get crypto_onramp_unsupported_country.
    blocked_ip_networks: list[str] = field(default_factory=lambda: list(DEFAULT_BLOCKED_IP_NETWORKS))
    # Oldest objects of each kind (sessions, events, ...) are forgotten past this count, so a long
    # benchmark run does not grow without bound. Idempotency keys are bounded the same way.
    max_objects: int = 100_000  # about 3 kB per session and 1.5 kB per event
    max_idempotency_keys: int = 200_000
    max_delivery_log: int = 100_000
    # Events older than this are forgotten, as Stripe keeps them 30 days (List Events and retrieval).
    event_retention_seconds: float = 30 * 86400
    # The emulator's clock (unix seconds): events' `created` and their retention; tests may move it.
    clock: Callable[[], float] = time.time
