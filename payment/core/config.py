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

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["Environment", "Settings", "SettingsError", "get_settings"]

ENV_PREFIX = "MUSDPAY_"

# Fields whose value is a credential: readable from `<ENV>_FILE`, never shown.
SECRET_FIELDS = ("stripe_secret_key", "stripe_webhook_secrets")

# Values people paste from docs and forget to replace.
_PLACEHOLDER_MARKERS = ("changeme", "placeholder", "your_", "xxx", "replace_me", "<")


class SettingsError(ValueError):
    """The configuration cannot run the service (e.g. a placeholder secret in production)."""


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

    @field_validator("source_currencies", "destination_currencies", "destination_networks")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [item.lower() for item in value]

    @field_validator("stripe_secret_key", mode="before")
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
        key = self.stripe_secret_key.get_secret_value() if self.stripe_secret_key else ""
        if key.startswith(("sk_live_", "rk_live_")) and self.environment is not Environment.production:
            raise SettingsError("a live Stripe key is configured outside production")
        return self

    def _secret_values(self) -> list[str]:
        values = [secret.get_secret_value() for secret in self.stripe_webhook_secrets]
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
