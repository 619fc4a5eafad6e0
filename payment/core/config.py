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

__all__ = [
    "DeliveryMode",
    "Environment",
    "JwtKey",
    "RateRule",
    "RpcProvider",
    "Settings",
    "SettingsError",
    "get_settings",
]

# The local chain's MUSD (sandbox/chain): the first contract anvil's first dev account deploys.
LOCAL_MUSD_ADDRESS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"

ENV_PREFIX = "MUSDPAY_"

# Fields whose value is a credential: readable from `<ENV>_FILE`, never shown.
SECRET_FIELDS = (
    "stripe_secret_key",
    "stripe_webhook_secrets",
    "rpc_providers",
    "treasury_key",
    "jwt_keys",
    "redis_url",
    "database_url",
    "backup_encryption_key",
)

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


class JwtKey(BaseModel):
    """One HS256 signing key of access tokens, named by the `kid` its tokens carry (see docs/security.md)."""

    model_config = ConfigDict(frozen=True)

    kid: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    secret: SecretStr

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < 32:
            raise ValueError("each JWT secret must be at least 32 bytes (e.g. `openssl rand -hex 32`)")
        return value


def _parse_jwt_keys(value: Any) -> Any:
    """`kid:secret,kid:secret` into JwtKey dicts (a secret may contain ':' but not ',')."""
    if not isinstance(value, str):
        return value
    keys = []
    for item in _split_csv(value):
        kid, sep, secret = item.partition(":")
        if not sep or not secret.strip():
            raise ValueError("each JWT key is kid:secret")
        keys.append({"kid": kid.strip(), "secret": secret.strip()})
    return keys


class RateRule(BaseModel):
    """A rate limit: `limit` requests per `period` seconds (burst up to `limit`), written `limit/period`."""

    model_config = ConfigDict(frozen=True)

    limit: int = Field(ge=1)
    period: float = Field(gt=0)


# Rate limit rules (per client IP, per wallet, per API key); see docs/security.md ("Rate limits").
DEFAULT_RATE_LIMITS = {
    "default": RateRule(limit=300, period=60),
    "create_session": RateRule(limit=30, period=60),  # per IP and per buyer wallet, whoever calls for it
    # Every request of one API key (a dApp's backend: one IP, all its buyers), on any route: 1000/s, the top of
    # the seed's medium tier and over twice what one instance serves (docs/benchmarks.md: ~440 sessions/s on two
    # cores), so an honest key meets the deployment's capacity first; its buyers keep their own limits.
    "api_key": RateRule(limit=60_000, period=60),
    "quote": RateRule(limit=30, period=60),  # each one is a call to Stripe, like a session
    "auth": RateRule(limit=30, period=60),  # sign-in, token refresh
    "auth_failure": RateRule(limit=10, period=300),  # 401 answers; once empty, credentials are refused (429)
    "webhook": RateRule(limit=6000, period=60),  # Stripe: generous, on its own bucket, never the default's
}
# `[METHOD ]/path` (a `*` suffix matches a prefix) -> rule name, or `exempt`; other routes use `default`.
DEFAULT_RATE_LIMIT_ROUTES = {
    "POST /api/v1/onramp/sessions": "create_session",
    "GET /api/v1/onramp/quotes": "quote",
    "/api/v1/webhooks/stripe": "webhook",
    "/api/v1/auth/*": "auth",
    "/healthz": "exempt",
    "/readyz": "exempt",
    "/metrics": "exempt",
}


def _parse_rate_limits(value: Any) -> Any:
    """`name=limit/period,...` (e.g. `create_session=30/60`) into rules, over the defaults."""
    if isinstance(value, str):
        parsed: dict[str, Any] = {}
        for item in _split_csv(value):
            name, sep, spec = item.partition("=")
            limit, slash, period = spec.partition("/")
            if not sep or not slash:
                raise ValueError("each rate limit is name=limit/seconds, e.g. create_session=30/60")
            parsed[name.strip()] = {"limit": limit.strip(), "period": period.strip()}
        value = parsed
    if isinstance(value, dict):
        return {**DEFAULT_RATE_LIMITS, **value}
    return value


def _parse_rate_limit_routes(value: Any) -> Any:
    """`[METHOD ]/path=rule,...` into a mapping, over the defaults."""
    if isinstance(value, str):
        parsed: dict[str, str] = {}
        for item in _split_csv(value):
            route, sep, rule = item.rpartition("=")
            if not sep or not route.strip() or not rule.strip():
                raise ValueError("each rate limit route is [METHOD ]/path=rule, e.g. POST /api/v1/x=create_session")
            parsed[route.strip()] = rule.strip()
        value = parsed
    if isinstance(value, dict):
        return {**DEFAULT_RATE_LIMIT_ROUTES, **value}
    return value


class Environment(StrEnum):
    development = "development"
    test = "test"
    staging = "staging"
    production = "production"


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdefABCDEF" for char in text)


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

    # Backups (payment/backup, docs/backups.md): the key is 32 bytes as 64 hex digits or base64.
    backup_encryption_key: SecretStr | None = None
    backup_s3_endpoint_url: str = ""  # an S3-compatible server (MinIO, moto); empty: AWS S3
    backup_keep_daily: int = Field(default=30, ge=0)  # `musdpay backup prune`: newest backup of each recent day
    backup_keep_monthly: int = Field(default=12, ge=0)  # ... and of each recent month

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

    # Stripe reconciliation (payment/reconcile, docs/onramp.md): a pass every interval (0: never, in the API),
    # under the lease "reconcile". It retrieves sessions not final and unchanged for `stale`, and lists the events
    # whose delivery failed since the last pass (less the lookback: Stripe marks an event failed only once its
    # retries end, up to 3 days in live mode).
    reconcile_interval_seconds: float = Field(default=300.0, ge=0)
    reconcile_stale_seconds: float = Field(default=120.0, ge=0)
    reconcile_max_sessions: int = Field(default=200, ge=1)  # sessions retrieved per pass, least recently changed first
    reconcile_max_event_pages: int = Field(default=10, ge=1)  # List Events pages (100 events each) per pass
    reconcile_events_lookback_seconds: float = Field(default=259_200.0, ge=0)
    reconcile_retry_initial_seconds: float = Field(default=5.0, gt=0)  # after a failed pass, doubling to the interval

    # Three-ledger conservation (payment/ledgers, docs/onramp.md): after each reconciliation pass of the lease holder,
    # the purchases fulfilled within the window are compared across Stripe, the database and the chain, and the
    # treasury's MUSD outflows of the last `ledger_outflow_blocks` blocks are matched to purchases.
    ledger_check_enabled: bool = True
    ledger_window_seconds: float = Field(default=86_400.0, gt=0)
    ledger_max_sessions: int = Field(default=1_000, ge=1)
    ledger_outflow_blocks: int = Field(default=50_000, ge=1)
    ledger_log_chunk_blocks: int = Field(default=5_000, ge=1)  # blocks per eth_getLogs (providers cap the range)
    # Accounts whose MUSD outflows must each belong to a purchase, besides the treasury key's own address.
    ledger_treasury_addresses: Annotated[list[str], NoDecode] = Field(default_factory=list)

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
    # The worker's lease: how long another process waits before taking over from one that died.
    delivery_lease_seconds: float = Field(default=30.0, gt=0)
    delivery_confirmations: int = Field(default=1, ge=1)  # CometBFT: one block is final
    delivery_deadline_seconds: float = Field(default=3600.0, gt=0)  # give up re-checking after this
    delivery_retry_initial_seconds: float = Field(default=2.0, gt=0)
    delivery_retry_max_seconds: float = Field(default=300.0, gt=0)
    # `musdpay deliver` (the worker as its own process) serves its /metrics here, on `host`; 0: any free port.
    delivery_metrics_port: int = Field(default=9102, ge=0, le=65535)
    treasury_key: SecretStr | None = None
    treasury_max_transfer: Decimal = Decimal("10000")  # MUSD per delivery
    treasury_daily_cap: Decimal = Decimal("100000")  # MUSD per UTC day
    treasury_min_musd: Decimal = Decimal("0")  # hold deliveries that would take the treasury below this
    treasury_min_btc: Decimal = Decimal("0.001")  # BTC kept for gas
    treasury_gas_limit: int = Field(default=100_000, ge=21_000)
    treasury_stuck_seconds: float = Field(default=60.0, gt=0)  # replace an unmined transfer after this
    treasury_fee_bump_percent: int = Field(default=25, ge=10, le=500)  # nodes require at least +10%
    # After a restore (a restore marker, or the treasury's nonce on chain ahead of the database), treasury sends
    # wait until the treasury's MUSD transfers are read back from the chain: from the block of the last transfer
    # the database knows, and at least this many recent blocks (eth_getLogs in `ledger_log_chunk_blocks` chunks).
    delivery_recovery_lookback_blocks: int = Field(default=50_000, ge=1)

    # Authentication: wallet sign-in (EIP-4361), access JWTs, refresh tokens and API keys; see docs/security.md.
    # No JWT key outside development refuses to start (the app, not these settings: `db upgrade` needs none).
    jwt_keys: Annotated[list[JwtKey], NoDecode] = Field(default_factory=list)  # "kid:secret,..." (HS256)
    jwt_active_kid: str | None = None  # the key that signs new tokens; default: the first of jwt_keys
    jwt_issuer: str = Field(default="musdpay", min_length=1)
    jwt_audience: str = Field(default="musdpay-api", min_length=1)
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=3600)
    refresh_token_ttl_seconds: int = Field(default=14 * 86400, ge=300)  # absolute: sign in again after this
    siwe_domains: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["localhost:5175"])
    siwe_nonce_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    siwe_clock_skew_seconds: int = Field(default=60, ge=0, le=600)
    api_key_rotation_grace_seconds: int = Field(default=86400, ge=0)  # an old key's life after `rotate`

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["http://localhost:5175"])
    trusted_proxy_hops: int = Field(default=0, ge=0)

    # Edge security: rate limits, request body size, security headers, shared limits in Redis (payment/security,
    # docs/security.md).
    redis_url: SecretStr | None = None  # redis://[:password@]host:6379/0 shares rate limits; unset: per process
    redis_timeout_seconds: float = Field(default=0.25, gt=0)  # per Redis call, then the in-memory fallback
    rate_limit_enabled: bool = True
    rate_limits: Annotated[dict[str, RateRule], NoDecode] = Field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    rate_limit_routes: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_RATE_LIMIT_ROUTES)
    )
    rate_limit_max_keys: int = Field(default=100_000, ge=100)  # in-memory buckets kept per process
    rate_limit_redis_prefix: str = "musdpay:ratelimit:"  # instances sharing a prefix share their limits
    max_body_bytes: int = Field(default=262_144, ge=1024)  # request bodies, streamed or not
    hsts_max_age_seconds: int = Field(default=63_072_000, ge=0)  # over TLS and in production; 0: no HSTS

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _rate_limits(cls, value: Any) -> Any:
        return _parse_rate_limits(value)

    @field_validator("rate_limit_routes", mode="before")
    @classmethod
    def _rate_limit_routes(cls, value: Any) -> Any:
        return _parse_rate_limit_routes(value)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_redis_url(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_edge(self) -> Settings:
        named = {rule for rule in self.rate_limit_routes.values() if rule != "exempt"}
        unknown = sorted(named - set(self.rate_limits))
        if unknown:
            raise SettingsError(f"rate limit routes name unknown rules: {', '.join(unknown)}")
        if "*" in self.cors_origins and self.environment is not Environment.development:
            raise SettingsError("MUSDPAY_CORS_ORIGINS may not be * outside development; list the dApp origins")
        return self

    @property
    def allowed_cors_origins(self) -> list[str]:
        """The CORS allow-list: as configured; by default the seed's dApp origin, in development and test only
        (never a localhost origin in staging or production unless configured)."""
        if "cors_origins" in self.model_fields_set or self.environment in {Environment.development, Environment.test}:
            return self.cors_origins
        return []

    # Observability: JSON logs, OpenTelemetry traces (exported only when OTEL_EXPORTER_OTLP_* is set), metrics.
    telemetry_enabled: bool = True
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    service_name: str = "musdpay-payment"

    host: str = "127.0.0.1"  # where `musdpay serve` (and `musdpay deliver`'s /metrics) listen
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
        "siwe_domains",
        "ledger_treasury_addresses",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("rpc_providers", mode="before")
    @classmethod
    def _providers(cls, value: Any) -> Any:
        return _parse_providers(value)

    @field_validator("database_url")
    @classmethod
    def _postgres_driver(cls, value: str) -> str:
        """`postgres://` and `postgresql://` (the URLs Railway, Heroku and CloudNativePG hand out) mean psycopg 3:
        SQLAlchemy would pick psycopg2, which is not installed."""
        for scheme in ("postgres://", "postgresql://"):
            if value.startswith(scheme):
                return "postgresql+psycopg://" + value.removeprefix(scheme)
        return value

    @field_validator("jwt_keys", mode="before")
    @classmethod
    def _jwt_keys(cls, value: Any) -> Any:
        return _parse_jwt_keys(value)

    @field_validator("ledger_treasury_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if len(address) != 42 or not address.startswith("0x") or not _is_hex(address[2:]):
                raise ValueError(f"not an address: {address!r} (0x and 40 hex digits)")
        return value

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

    @field_validator("stripe_secret_key", "treasury_key", "backup_encryption_key", mode="before")
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

    @model_validator(mode="after")
    def _check_auth(self) -> Settings:
        kids = [key.kid for key in self.jwt_keys]
        if len(set(kids)) != len(kids):
            raise SettingsError("JWT key ids (kid) must be unique")
        if self.jwt_active_kid is not None and self.jwt_active_kid not in kids:
            raise SettingsError(f"MUSDPAY_JWT_ACTIVE_KID {self.jwt_active_kid!r} is not among MUSDPAY_JWT_KEYS")
        return self

    def _secret_values(self) -> list[str]:
        values = [secret.get_secret_value() for secret in self.stripe_webhook_secrets]
        values += [key.secret.get_secret_value() for key in self.jwt_keys]
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
