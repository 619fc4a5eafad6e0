"""The monitor's configuration: one YAML file (`monitor.yml`), typed and validated here.

    settings:            # values of the payment service's Settings (database_url, rpc_providers, chain_id, ...);
      database_url: ${MUSDPAY_DATABASE_URL}   # anything left out comes from MUSDPAY_* variables, as for `serve`
    server: {host: 127.0.0.1, port: 9101}
    rpc:      {interval_seconds: 5, providers: {spectrum: {sla_target_ratio: 0.999, plan: {name: ..., ...}}}}
    stripe:   {interval_seconds: 30, ...}
    payments: {interval_seconds: 60, windows: {1h: 3600, 24h: 86400}}
    database: {interval_seconds: 15, replica_url: ...}
    pipeline: {interval_seconds: 30, stuck_processing_after_seconds: 1800, ...}
    treasury: {interval_seconds: 60, address: 0x...}
    reverify: {enabled: false, ...}
    archiver: {enabled: false, interval_seconds: 60, destination: s3://bucket/prefix}   # PostgreSQL PITR
    backup:   {enabled: false, interval_seconds: 86400, dest: s3://bucket/prefix}       # docs/backups.md

Every string may reference secrets and variables, substituted after the YAML is parsed (so a value can never
change the document's structure):

    ${NAME}              the environment variable NAME (an error when it is not set)
    ${NAME:-default}     NAME, or `default` when it is unset or empty
    ${file:/path}        the content of a file, stripped (Docker and Kubernetes secrets)
    $$                   a literal $

The connection details (database URL, RPC providers and their keys, Stripe key, chain id, MUSD address) are the
payment service's own `Settings`, parsed and validated by it: the monitor never re-implements that parsing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from payment.core.config import Settings

__all__ = [
    "ArchiverConfig",
    "BackupConfig",
    "ConfigError",
    "DatabaseConfig",
    "JobConfig",
    "MonitorConfig",
    "PaymentsConfig",
    "PipelineConfig",
    "ReverifyConfig",
    "RpcConfig",
    "RpcPlanConfig",
    "RpcProviderConfig",
    "ServerConfig",
    "StripeConfig",
    "TreasuryConfig",
    "load_config",
    "substitute",
]

DEFAULT_WINDOWS = {"1h": 3600.0, "24h": 86400.0}


class ConfigError(ValueError):
    """The monitor's configuration is missing, malformed or refers to something that does not exist."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobConfig(_Model):
    """When and how long one kind of probe runs. Each target of the kind is its own scheduled job."""

    enabled: bool = True
    interval_seconds: float = Field(default=15.0, gt=0)
    # Random delay added to each run, so many monitors (or targets) do not probe in step. Default: 10% of interval.
    jitter_seconds: float | None = Field(default=None, ge=0)
    # The whole probe of one target; past it the run is abandoned and counted as a timeout. Default: 80% of interval.
    timeout_seconds: float | None = Field(default=None, gt=0)
    # A run that could not start within this of its time is skipped (counted), not run late. Default: the interval.
    misfire_grace_seconds: float | None = Field(default=None, gt=0)

    @property
    def jitter(self) -> float:
        return self.interval_seconds * 0.1 if self.jitter_seconds is None else self.jitter_seconds

    @property
    def timeout(self) -> float:
        return self.interval_seconds * 0.8 if self.timeout_seconds is None else self.timeout_seconds

    @property
    def misfire_grace(self) -> float:
        return self.interval_seconds if self.misfire_grace_seconds is None else self.misfire_grace_seconds


class RpcPlanConfig(_Model):
    """The provider's commercial plan: what `musdpay report` prices the credits with (share of the quota x price)."""

    name: str = Field(min_length=1, max_length=200)
    # Money is a Decimal, whole cents at most (YAML `169` or `169.99`).
    monthly_price_usd: Decimal = Field(ge=0, decimal_places=2, allow_inf_nan=False)


class RpcProviderConfig(_Model):
    """What the monitor knows of one provider beyond its URL: its SLA and its pricing."""

    sla_target_ratio: float | None = Field(default=None, gt=0, le=1)
    # Credits each JSON-RPC method costs on this provider's plan; methods not listed cost `default`.
    credits: dict[str, float] = Field(default_factory=dict)
    monthly_credit_quota: float | None = Field(default=None, gt=0)
    plan: RpcPlanConfig | None = None  # optional; none for a free or best-effort endpoint


class RpcConfig(JobConfig):
    interval_seconds: float = Field(default=5.0, gt=0)
    # Per JSON-RPC call; default: half the probe's timeout (a probe makes up to two calls).
    call_timeout_seconds: float | None = Field(default=None, gt=0)
    chain_id_every: int = Field(default=1, ge=1)  # eth_chainId on every Nth probe (1: each probe)
    # A provider whose head has not moved for this long while another provider's head is ahead of it is stalled.
    stall_after_seconds: float = Field(default=30.0, gt=0)
    default_sla_target_ratio: float = Field(default=0.99, gt=0, le=1)
    default_credits: dict[str, float] = Field(default_factory=lambda: {"default": 1.0})
    # Per provider (by its name in the payment settings); providers not listed get the defaults above.
    providers: dict[str, RpcProviderConfig] = Field(default_factory=dict)

    @property
    def call_timeout(self) -> float:
        return self.timeout / 2 if self.call_timeout_seconds is None else self.call_timeout_seconds

    def sla_target(self, provider: str) -> float:
        own = self.providers.get(provider)
        if own is not None and own.sla_target_ratio is not None:
            return own.sla_target_ratio
        return self.default_sla_target_ratio

    def credit_table(self, provider: str) -> dict[str, float]:
        own = self.providers.get(provider)
        return {**self.default_credits, **(own.credits if own is not None else {})}

    def quota(self, provider: str) -> float | None:
        own = self.providers.get(provider)
        return own.monthly_credit_quota if own is not None else None

    def plan(self, provider: str) -> RpcPlanConfig | None:
        own = self.providers.get(provider)
        return own.plan if own is not None else None


class StripeConfig(JobConfig):
    interval_seconds: float = Field(default=30.0, gt=0)
    # Refunds and disputes are counted over these windows (and since the monitor started, as counters).
    windows: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WINDOWS))
    max_pages: int = Field(default=10, ge=1)  # per list and poll, 100 objects a page


class PaymentsConfig(JobConfig):
    interval_seconds: float = Field(default=60.0, gt=0)
    windows: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WINDOWS))
    # A session still `initialized` or `requires_payment` this long after its creation counts as abandoned.
    abandoned_after_seconds: float = Field(default=3600.0, gt=0)


class DatabaseConfig(JobConfig):
    interval_seconds: float = Field(default=15.0, gt=0)
    replica_url: SecretStr | None = None  # a read replica whose replay lag is measured


class ArchiverConfig(JobConfig):
    """PostgreSQL WAL archiving (pg_stat_archiver) and the archive's recovery window (point-in-time recovery)."""

    enabled: bool = False  # needs the archive destination, the `--dest` of archive_command
    interval_seconds: float = Field(default=60.0, gt=0)
    destination: str | None = None  # a directory or s3://bucket/prefix
    s3_endpoint_url: str | None = None  # an S3-compatible server (MinIO); default AWS S3

    @model_validator(mode="after")
    def _check_destination(self) -> ArchiverConfig:
        if self.enabled and not self.destination:
            raise ValueError("archiver.enabled needs archiver.destination (the --dest of archive_command)")
        return self


class BackupConfig(JobConfig):
    """Scheduled `musdpay backup create`, `prune` after it, and `verify` of the newest backup (docs/backups.md).

    The job looks at the destination every `check_interval_seconds` (so a restarted monitor neither backs up
    again nor forgets the last backup's time) and backs up when the newest backup is `interval_seconds` old."""

    enabled: bool = False
    interval_seconds: float = Field(default=86400.0, gt=0)  # between backups
    dest: str = ""  # a directory or s3://bucket/prefix (MUSDPAY_BACKUP_S3_ENDPOINT_URL for MinIO)
    verify_interval_seconds: float = Field(default=86400.0, gt=0)  # between verifications of the newest backup
    check_interval_seconds: float = Field(default=300.0, gt=0)  # how often the job looks
    # One round (backup, prune and verify); default: an hour, or the check interval when longer.
    timeout_seconds: float | None = Field(default=None, gt=0)
    keep_daily: int | None = Field(default=None, ge=0)  # default: the settings' (30)
    keep_monthly: int | None = Field(default=None, ge=0)  # default: the settings' (12)

    @model_validator(mode="after")
    def _check_dest(self) -> BackupConfig:
        if self.enabled and not self.dest:
            raise ValueError("backup.enabled needs backup.dest (a directory or s3://bucket/prefix)")
        return self

    def schedule(self) -> JobConfig:
        """The scheduler's timing: a run every check interval, each allowed the round's timeout."""
        check = self.check_interval_seconds
        return JobConfig(
            interval_seconds=check,
            jitter_seconds=self.jitter_seconds if self.jitter_seconds is not None else min(check * 0.1, 30.0),
            timeout_seconds=self.timeout_seconds or max(3600.0, check),
            misfire_grace_seconds=self.misfire_grace_seconds,
        )


class PipelineConfig(JobConfig):
    interval_seconds: float = Field(default=30.0, gt=0)
    stuck_processing_after_seconds: float = Field(default=1800.0, gt=0)
    # A paid session whose delivery is not verified this long after it became due is counted, with its amount.
    undelivered_after_seconds: float = Field(default=3600.0, gt=0)
    # Sessions still open (not final) and touched within this are the ones that expect webhooks.
    open_session_horizon_seconds: float = Field(default=86400.0, gt=0)


class TreasuryConfig(JobConfig):
    interval_seconds: float = Field(default=60.0, gt=0)
    # The treasury account; default: the address of the payment settings' treasury key, if one is set.
    address: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{40}$")


class ReverifyConfig(JobConfig):
    """The one job that writes: re-run the chain check of paid sessions whose delivery gave up unverified."""

    enabled: bool = False
    interval_seconds: float = Field(default=300.0, gt=0)
    # A delivery not_found or failed at least this long ago (and not re-verified since) is looked at again.
    after_seconds: float = Field(default=3600.0, gt=0)
    max_per_run: int = Field(default=50, ge=1)


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=9101, ge=0, le=65535)  # 0: a free port (printed at start)


class MonitorConfig(_Model):
    settings: dict[str, Any] = Field(default_factory=dict)
    server: ServerConfig = Field(default_factory=ServerConfig)
    rpc: RpcConfig = Field(default_factory=RpcConfig)
    stripe: StripeConfig = Field(default_factory=StripeConfig)
    payments: PaymentsConfig = Field(default_factory=PaymentsConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    treasury: TreasuryConfig = Field(default_factory=TreasuryConfig)
    reverify: ReverifyConfig = Field(default_factory=ReverifyConfig)
    archiver: ArchiverConfig = Field(default_factory=ArchiverConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)

    @model_validator(mode="after")
    def _check_windows(self) -> MonitorConfig:
        for name, windows in (("stripe", self.stripe.windows), ("payments", self.payments.windows)):
            if not windows or any(seconds <= 0 for seconds in windows.values()):
                raise ValueError(f"{name}.windows needs at least one window of positive seconds")
        return self

    def payment_settings(self) -> Settings:
        """The payment service's settings: the `settings:` values over MUSDPAY_* variables and defaults."""
        try:
            settings = Settings(**self.settings)
        except ValidationError as exc:
            raise ConfigError(f"invalid settings: {_describe(exc)}") from None
        unknown = sorted(set(self.rpc.providers) - {p.name for p in settings.rpc_providers})
        if unknown:
            raise ConfigError(f"rpc.providers names providers that are not configured: {', '.join(unknown)}")
        return settings


def _describe(exc: ValidationError) -> str:
    """Where and what, never the offending value: it may be a secret (a URL with its key)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )


_REFERENCE = re.compile(r"\$(\$|\{([^}]*)\})")


def substitute(value: str, environ: Mapping[str, str]) -> str:
    """`value` with `${NAME}`, `${NAME:-default}`, `${file:/path}` and `$$` replaced."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        body = match.group(2)
        if body.startswith("file:"):
            path = Path(body[5:])
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read ${{file:{path}}}: {exc.strerror}") from None
        name, sep, default = body.partition(":-")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"malformed reference ${{{body}}}")
        found = environ.get(name)
        if found:
            return found
        if sep:
            return default
        if found is None:
            raise ConfigError(f"${{{name}}} is referenced but not set")
        return found

    return _REFERENCE.sub(replace, value)


def _substitute_tree(node: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return substitute(node, environ)
    if isinstance(node, list):
        return [_substitute_tree(item, environ) for item in node]
    if isinstance(node, dict):
        return {key: _substitute_tree(item, environ) for key, item in node.items()}
    return node


def load_config(
    path: Path | None = None, *, text: str | None = None, environ: Mapping[str, str] | None = None
) -> MonitorConfig:
    """Read, substitute and validate a config file (or `text`); no file at all means every default."""
    env = os.environ if environ is None else environ
    if text is None:
        if path is None:
            return MonitorConfig()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path or 'config'} is not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping at the top level")
    try:
        return MonitorConfig.model_validate(_substitute_tree(raw, env))
    except ValidationError as exc:
        raise ConfigError(f"invalid monitor config: {_describe(exc)}") from None
