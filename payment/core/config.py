"""The one settings object of the payment service.

Every setting comes from the environment (prefix ``MUSDPAY_``); each secret may instead come from a file named
by ``MUSDPAY_<NAME>_FILE`` (Docker and Kubernetes secrets). Secrets have no defaults, and a placeholder secret is
refused outside development.
"""

from __future__ import annotations

import os
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["DeliveryMode", "Environment", "RpcProvider", "Settings", "SettingsError", "get_settings"]

# The local chain's MUSD (sandbox/chain): the first contract anvil's first dev account deploys.
LOCAL_MUSD_ADDRESS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"

ENV_PREFIX = "MUSDPAY_"

# Fields whose value is a credential: readable from `<ENV>_FILE`, never shown.
SECRET_FIELDS = ("stripe_secret_key", "stripe_webhook_secrets", "rpc_providers", "treasury_key")

# Values people paste from docs and forget to replace.
_PLACEHOLDER_MARKERS = ("changeme", "placeholder", "your_", "xxx", "replace_me", "<")


class SettingsError(ValueError):
    """The configuration cannot run the service (e.g. a placeholder secret in production)."""


class DeliveryMode(StrEnum):
    onramp = "onramp"  # Stripe delivers the MUSD; we verify the transfer on chain
    treasury = "treasury"  # we send the MUSD from our treasury key once the payment completes


class RpcProvider(BaseModel):
    """One JSON-RPC endpoint of the Mezo chain; the URL may carry an API key (Spectrum puts it in the path)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    url: SecretStr


def _parse_providers(value: Any) -> Any:
    """`name=url,name=url` (in order of preference) into RpcProvider dicts."""
    if not isinstance(value, str):
        return value
    providers = []
    for item in _split_csv(value):
        name, sep, url = item.partition("=")
        if not sep or not url.strip():
            raise ValueError("each RPC provider is name=url")
        providers.append({"name": name.strip(), "url": url.strip()})
    return providers


class Environment(StrEnum):
    development = "development"
    test = "test"
    staging = "staging"
    production = "production"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class _SecretFileSource(PydanticBaseSettingsSource):
    """Reads `MUSDPAY_<FIELD>_FILE` for secret fields, so secrets can live in mounted files."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name not in SECRET_FIELDS:
            return None, field_name, False
        path = os.environ.get(f"{ENV_PREFIX}{field_name.upper()}_FILE")
        if not path:
            return None, field_name, False
        try:
            return Path(path).read_text(encoding="utf-8").strip(), field_name, False
        except OSError as exc:
            raise SettingsError(f"cannot read {ENV_PREFIX}{field_name.upper()}_FILE: {exc.strerror}") from exc

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class Settings(BaseSettings):
    """Typed configuration; see the README's settings table for each field."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    environment: Environment = Environment.development
    database_url: str = "sqlite:///./dev.sqlite"
    database_pool_size: int = Field(default=10, ge=1)
    database_echo: bool = False
    auto_migrate: bool | None = None  # None: migrate at start in development only

    stripe_secret_key: SecretStr | None = None
    stripe_api_base: str = ""  # empty: Stripe itself
    stripe_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1)
    stripe_timeout_seconds: float = Field(default=10.0, gt=0)
    stripe_max_network_retries: int = Field(default=2, ge=0, le=5)
    stripe_api_version: str | None = None

    min_source_amount: Decimal = Decimal("1")
    max_source_amount: Decimal = Decimal("10000")
    source_currencies: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["usd"])
    destination_currencies: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["musd"])
    destination_networks: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["mezo"])
    lock_wallet_address: bool = True

    # A session row left in `creating` longer than this is taken over by the recovery sweep (a crashed request).
    creation_lease_seconds: float = Field(default=60.0, gt=0)
    recovery_interval_seconds: float = Field(default=30.0, gt=0)

    # Mezo chain (defaults fit `musdpay sandbox chain`): providers in order of preference, the pool's health policy.
    chain_id: int = Field(default=31611, ge=1)  # 31611 Mezo testnet, 31612 mainnet
    rpc_providers: Annotated[list[RpcProvider], NoDecode] = Field(
        default_factory=lambda: [RpcProvider(name="local", url=SecretStr("http://127.0.0.1:8545"))]
    )
    rpc_timeout_seconds: float = Field(default=5.0, gt=0)  # per call, per provider
    rpc_max_attempts: int = Field(default=3, ge=1, le=10)  # providers tried per call on retryable errors
    rpc_poll_interval_seconds: float = Field(default=5.0, gt=0)  # health polls of every provider
    rpc_unreachable_after: int = Field(default=3, ge=1)  # consecutive failed polls
    rpc_out_of_sync_blocks: int = Field(default=5, ge=0)  # head lag behind the best provider
    rpc_recover_after: int = Field(default=3, ge=1)  # consecutive good polls before a provider is used again
    musd_address: str = Field(default=LOCAL_MUSD_ADDRESS, pattern=r"^0x[0-9a-fA-F]{40}$")

    # MUSD delivery: verified (onramp) or sent from our treasury, with caps on what the treasury may send.
    delivery_mode: DeliveryMode = DeliveryMode.onramp
    delivery_worker_enabled: bool = True  # run the delivery worker inside the API process
    delivery_poll_seconds: float = Field(default=1.0, gt=0)
    delivery_confirmations: int = Field(default=1, ge=1)  # CometBFT: one block is final
    delivery_deadline_seconds: float = Field(default=3600.0, gt=0)  # give up re-checking after this
    delivery_retry_initial_seconds: float = Field(default=2.0, gt=0)
    delivery_retry_max_seconds: float = Field(default=300.0, gt=0)
    treasury_key: SecretStr | None = None
    treasury_max_transfer: Decimal = Decimal("10000")  # MUSD per delivery
    treasury_daily_cap: Decimal = Decimal("100000")  # MUSD per UTC day
    treasury_min_musd: Decimal = Decimal("0")  # hold deliveries that would take the treasury below this
    treasury_min_btc: Decimal = Decimal("0.001")  # BTC kept for gas
    treasury_gas_limit: int = Field(default=100_000, ge=21_000)
    treasury_stuck_seconds: float = Field(default=60.0, gt=0)  # replace an unmined transfer after this
    treasury_fee_bump_percent: int = Field(default=25, ge=10, le=500)  # nodes require at least +10%

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["http://localhost:5175"])
    trusted_proxy_hops: int = Field(default=0, ge=0)

    # Observability: JSON logs, OpenTelemetry traces (exported only when OTEL_EXPORTER_OTLP_* is set), metrics.
    telemetry_enabled: bool = True
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    service_name: str = "musdpay-payment"

    host: str = "127.0.0.1"
    port: int = Field(default=3001, ge=1, le=65535)
    shutdown_grace_seconds: float = Field(default=15.0, ge=0)

    # Fault injection for crash tests: names of crash points at which the process kills itself.
    # Ignored in production.
    crash_points: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator(
        "stripe_webhook_secrets",
        "source_currencies",
        "destination_currencies",
        "destination_networks",
        "cors_origins",
        "crash_points",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("rpc_providers", mode="before")
    @classmethod
    def _providers(cls, value: Any) -> Any:
        return _parse_providers(value)

    @field_validator("rpc_providers")
    @classmethod
    def _unique_providers(cls, value: list[RpcProvider]) -> list[RpcProvider]:
        names = [provider.name for provider in value]
        if not names:
            raise ValueError("at least one RPC provider is needed")
        if len(set(names)) != len(names):
            raise ValueError("RPC provider names must be unique")
        return value

    @field_validator("source_currencies", "destination_currencies", "destination_networks")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [item.lower() for item in value]

    @field_validator("stripe_secret_key", "treasury_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.min_source_amount <= 0 or self.max_source_amount < self.min_source_amount:
            raise SettingsError("source amount bounds must satisfy 0 < min <= max")
        if self.environment is not Environment.development:
            for secret in self._secret_values():
                if any(marker in secret.lower() for marker in _PLACEHOLDER_MARKERS):
                    raise SettingsError(
                        f"a placeholder secret is configured; refusing to start in {self.environment.value}"
                    )
        if self.delivery_mode is DeliveryMode.treasury and self.treasury_key is None:
            raise SettingsError("delivery mode treasury needs MUSDPAY_TREASURY_KEY or MUSDPAY_TREASURY_KEY_FILE")
        key = self.stripe_secret_key.get_secret_value() if self.stripe_secret_key else ""
        if key.startswith(("sk_live_", "rk_live_")) and self.environment is not Environment.production:
            raise SettingsError("a live Stripe key is configured outside production")
        return self

    def _secret_values(self) -> list[str]:
        values = [secret.get_secret_value() for secret in self.stripe_webhook_secrets]
        values += [provider.url.get_secret_value() for provider in self.rpc_providers]
        if self.treasury_key:
            values.append(self.treasury_key.get_secret_value())
        if self.stripe_secret_key:
            values.append(self.stripe_secret_key.get_secret_value())
        return values

    @property
    def stripe_configured(self) -> bool:
        return self.stripe_secret_key is not None and bool(self.stripe_webhook_secrets)

    @property
    def migrate_at_start(self) -> bool:
        if self.auto_migrate is not None:
            return self.auto_migrate
        return self.environment is Environment.development

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit values win, then the environment, then `*_FILE` secrets.
        return (init_settings, env_settings, _SecretFileSource(settings_cls), dotenv_settings)


@lru_cache
def get_settings() -> Settings:
    return Settings()
