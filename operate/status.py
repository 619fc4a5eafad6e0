"""`musdpay status`: what the on-call person needs to see first, read from Prometheus's HTTP API.

    with PrometheusClient(url) as client:
        status = collect_status(client, datetime.now(UTC))
    Console().print(render(status))      # rich tables
    print(to_json(status))               # one JSON document (schema "musdpay.status/v1")
    sys.exit(status.exit_code)           # 0, or 2 when a critical alert fires

Everything comes from what the project exports and records: the alerts the shipped rules hold (severity from the
`severity` label, runbook from the `runbook_url` annotation), the SLO recording rules of alerts/generated/slo-*.yml
(`slo:objective:ratio`, `slo:error_budget_remaining:ratio`, `slo:sli_error:ratio_rate<window>`), the monitor's
`musdpay_monitor_*` families and the API's `musdpay_rpc_provider_*` and `musdpay_onramp_*` families
(docs/metrics.md). A value Prometheus does not have (no series, or NaN such as a quantile of no observations) is
`None` here, "no data" on screen and `null` in JSON: never 0 and never healthy.

Several API or monitor instances (or workers) are folded per provider: the worst `up` (min), every state seen,
histograms and probe counters summed, pipeline gauges the largest (every monitor reads the same database).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from operate.prometheus import PrometheusClient, Sample

__all__ = [
    "AVAILABILITY_WINDOW",
    "DEFAULT_JOBS",
    "LATENCY_WINDOW",
    "SCHEMA",
    "AlertStatus",
    "BurnRate",
    "Jobs",
    "PipelineStatus",
    "ProviderStatus",
    "SloStatus",
    "Status",
    "StripeStatus",
    "TargetStatus",
    "WebhookFreshness",
    "collect_status",
    "render",
    "to_json",
    "to_jsonable",
]

SCHEMA = "musdpay.status/v1"
# RPC availability against the SLA: the monitor's probes over the SLO period (alerts/slo.yml `period`), or over as
# much of it as Prometheus holds (increase() covers the samples there are); the probe count says how much that is.
AVAILABILITY_WINDOW = "30d"
# Quantiles of the monitor's RPC and Stripe latency histograms, and the API's webhook lag.
LATENCY_WINDOW = "5m"
# "Sessions by status in the last hour".
PIPELINE_WINDOW = "1h"
# Stripe's webhooks stall alert (StripeWebhooksStalled) threshold, shown next to the silence.
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
_SLI_ERROR_RECORD = re.compile(r"^slo:sli_error:ratio_rate(?P<window>\w+)$")
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


@dataclass(frozen=True, slots=True)
class Jobs:
    """Prometheus job names of the API and the monitor (prometheus.yml; `api_job`/`monitor_job` of
    alerts/thresholds.yml, which a test holds these defaults to)."""

    api: str = "musdpay-api"
    monitor: str = "musdpay-monitor"


DEFAULT_JOBS = Jobs()


# --- the data model ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertStatus:
    name: str
    state: str  # "firing" or "pending"
    severity: str | None  # the `severity` label
    summary: str | None
    runbook_url: str | None  # the `runbook_url` annotation
    active_since: datetime | None
    value: float | None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def critical_firing(self) -> bool:
        return self.state == "firing" and self.severity == "critical"


@dataclass(frozen=True, slots=True)
class BurnRate:
    """Error ratio over `window` divided by the error budget (1 - objective): 1.0 spends the budget exactly over
    the period; 14.4 over 1h is a page."""

    window: str
    rate: float | None


@dataclass(frozen=True, slots=True)
class SloStatus:
    name: str
    service: str | None
    objective: float | None  # slo:objective:ratio
    error_budget_remaining: float | None  # slo:error_budget_remaining:ratio (negative: overspent)
    burn_rates: tuple[BurnRate, ...]  # one per window the rules record, shortest first

    @property
    def fastest_burn(self) -> BurnRate | None:
        """The largest burn rate over the recorded windows; on a tie (within float noise) the shortest window."""
        known = [(b, b.rate) for b in self.burn_rates if b.rate is not None]
        if not known:
            return None
        top = max(rate for _, rate in known)
        return next(b for b, rate in known if math.isclose(rate, top, rel_tol=1e-9, abs_tol=1e-12))


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    name: str
    up: bool | None  # musdpay_monitor_rpc_up (the monitor's last probe)
    api_state: str | None  # musdpay_rpc_provider_state (the API's pool), "a/b" if instances disagree
    api_selected: bool | None  # musdpay_rpc_provider_selected
    latency_p50_seconds: float | None  # musdpay_monitor_rpc_latency_seconds over LATENCY_WINDOW
    latency_p99_seconds: float | None
    availability: float | None  # successful probes over all probes, AVAILABILITY_WINDOW
    probes: float | None  # how many probes that is (increase(), so approximate)
    sla_target: float | None  # musdpay_monitor_rpc_sla_target_ratio
    credits_projected: float | None  # the monitor's month projection (musdpay_monitor_rpc_month_credits_projected)
    credits_projected_with_api: float | None  # provider:musdpay_rpc_credits:month_projected (monitor + API calls)
    credit_quota: float | None  # musdpay_monitor_rpc_month_credit_quota (absent when not configured)

    @property
    def meets_sla(self) -> bool | None:
        if self.availability is None or self.sla_target is None:
            return None
        return self.availability >= self.sla_target

    @property
    def credit_quota_ratio(self) -> float | None:
        projected = self.credits_projected_with_api
        if projected is None:
            projected = self.credits_projected
        if projected is None or not self.credit_quota:
            return None
        return projected / self.credit_quota


@dataclass(frozen=True, slots=True)
class WebhookFreshness:
    last_processed_at: datetime | None  # musdpay_monitor_pipeline_last_webhook_timestamp_seconds
    never: bool | None  # that gauge is 0: no webhook was ever processed (None: no data)
    silence_seconds: float | None  # musdpay_monitor_pipeline_webhook_silence_seconds (0 when nothing is open)
    lag_p99_seconds: float | None  # the API's musdpay_webhook_lag_seconds over LATENCY_WINDOW
    age_seconds: float | None = None  # now - last_processed_at


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    transitions: Mapping[str, float] | None  # increase of musdpay_onramp_status_transitions_total by to_status
    sessions: Mapping[str, int] | None  # musdpay_monitor_onramp_sessions{window="1h"} by outcome (the 1h cohort)
    paid_not_delivered: int | None  # sum of musdpay_monitor_pipeline_undelivered_sessions
    paid_not_delivered_by_status: Mapping[str, int] | None
    amount_at_risk: Mapping[str, Decimal] | None  # musdpay_monitor_pipeline_undelivered_amount by currency
    oldest_undelivered_age_seconds: float | None
    stuck_sessions: int | None
    open_sessions: int | None
    webhooks: WebhookFreshness
    window: str = PIPELINE_WINDOW


@dataclass(frozen=True, slots=True)
class StripeStatus:
    up: bool | None  # musdpay_monitor_stripe_up
    last_success_age_seconds: float | None  # the stripe probe's last success
    latency_p99_seconds: float | None  # musdpay_monitor_stripe_request_duration_seconds{operation="balance"}


@dataclass(frozen=True, slots=True)
class TargetStatus:
    job: str
    instance: str
    health: str  # "up", "down" or "unknown"
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Status:
    prometheus_url: str
    at: datetime
    alerts: tuple[AlertStatus, ...]
    slos: tuple[SloStatus, ...]
    providers: tuple[ProviderStatus, ...]
    pipeline: PipelineStatus
    stripe: StripeStatus
    targets: tuple[TargetStatus, ...]
    # The always-firing Watchdog (severity none): firing proves the rules are evaluated; it is not shown as an
    # alert. None: no Watchdog rule is loaded (a Prometheus without the shipped rules).
    watchdog_firing: bool | None = None
    availability_window: str = AVAILABILITY_WINDOW
    latency_window: str = LATENCY_WINDOW

    @property
    def critical_firing(self) -> tuple[AlertStatus, ...]:
        return tuple(a for a in self.alerts if a.critical_firing)

    @property
    def exit_code(self) -> int:
        """0 when nothing critical fires, 2 when a critical alert fires (1 is the CLI's: no Prometheus)."""
        return 2 if self.critical_firing else 0


# --- collecting ---------------------------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _window_seconds(window: str) -> float:
    parts = _DURATION.findall(window)
    if not parts or "".join(n + u for n, u in parts) != window:
        return math.inf  # not a Prometheus duration: sorts last
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        # Prometheus sends nanoseconds (2024-01-01T00:00:00.123456789Z), which fromisoformat refuses before 3.12.
        match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
        if not match:
            return None
        fraction = (match.group(2) or "")[:7]
        zone = "+00:00" if match.group(3) == "Z" else match.group(3)
        parsed = datetime.fromisoformat(f"{match.group(1)}{fraction}{zone}")
    return parsed.astimezone(UTC)


def _count(value: float | None) -> int | None:
    value = _finite(value)
    return None if value is None else round(value)


class _Reader:
    """Instant queries at one evaluation time, so every figure of a Status describes the same moment."""

    def __init__(self, client: PrometheusClient, at: datetime) -> None:
        self.client = client
        self.at = at

    def samples(self, expr: str) -> list[Sample]:
        return self.client.samples(expr, at=self.at)

    def by(self, label: str, expr: str) -> dict[str, float]:
        """One finite value per value of `label` (the expression aggregates by it)."""
        return {
            s.labels.get(label, ""): s.value for s in self.samples(expr) if math.isfinite(s.value) and label in s.labels
        }

    def scalar(self, expr: str) -> float | None:
        return _finite(self.client.value(expr, at=self.at))

    def decimals_by(self, label: str, expr: str) -> dict[str, Decimal]:
        """Like `by`, keeping the value's text as Prometheus sent it, as a Decimal (money is never a float)."""
        found: dict[str, Decimal] = {}
        for item in self.client.query(expr, at=self.at):
            try:
                amount = Decimal(str(item["value"][1]))
            except (InvalidOperation, IndexError, KeyError):
                continue
            if amount.is_finite() and label in item["metric"]:
                found[item["metric"][label]] = amount
        return found


WATCHDOG_SEVERITY = "none"


def _watchdog(client: PrometheusClient, alerts: tuple[AlertStatus, ...]) -> bool | None:
    if any(a.severity == WATCHDOG_SEVERITY and a.state == "firing" for a in alerts):
        return True
    loaded = any(
        rule.get("labels", {}).get("severity") == WATCHDOG_SEVERITY
        for group in client.rules(kind="alert")
        for rule in group.get("rules", [])
    )
    return False if loaded else None


def _collect_alerts(client: PrometheusClient) -> tuple[AlertStatus, ...]:
    alerts = []
    for raw in client.alerts():
        labels = {str(k): str(v) for k, v in (raw.get("labels") or {}).items()}
        annotations = raw.get("annotations") or {}
        try:
            value = _finite(float(raw.get("value", "nan")))
        except (TypeError, ValueError):
            value = None
        alerts.append(
            AlertStatus(
                name=labels.get("alertname", "?"),
                state=str(raw.get("state", "?")),
                severity=labels.get("severity"),
                summary=annotations.get("summary"),
                runbook_url=annotations.get("runbook_url"),
                active_since=_parse_time(raw.get("activeAt")),
                value=value,
                labels=labels,
            )
        )
    alerts.sort(
        key=lambda a: (
            a.state != "firing",
            SEVERITY_ORDER.get(a.severity or "", 9),
            a.name,
            sorted(a.labels.items()),
        )
    )
    return tuple(alerts)


def _recorded_windows(client: PrometheusClient) -> list[str]:
    """The windows the loaded SLO rules record `slo:sli_error:ratio_rate<window>` for, shortest first."""
    windows: set[str] = set()
    for group in client.rules(kind="record"):
        for rule in group.get("rules", []):
            match = _SLI_ERROR_RECORD.match(str(rule.get("name", "")))
            if match:
                windows.add(match.group("window"))
    return sorted(windows, key=lambda w: (_window_seconds(w), w))


def _collect_slos(client: PrometheusClient, read: _Reader) -> tuple[SloStatus, ...]:
    objectives = {s.labels["slo"]: s for s in read.samples("slo:objective:ratio") if "slo" in s.labels}
    remaining = read.by("slo", "slo:error_budget_remaining:ratio")
    windows = _recorded_windows(client)
    ratios: dict[str, dict[str, float]] = {}
    if windows:
        names = "|".join(re.escape(f"slo:sli_error:ratio_rate{w}") for w in windows)
        for s in read.samples(f'{{__name__=~"{names}"}}'):
            match = _SLI_ERROR_RECORD.match(s.labels.get("__name__", ""))
            if match and "slo" in s.labels and math.isfinite(s.value):
                ratios.setdefault(s.labels["slo"], {})[match.group("window")] = s.value
    slos = []
    for name in sorted(set(objectives) | set(remaining) | set(ratios)):
        objective_sample = objectives.get(name)
        objective = _finite(objective_sample.value) if objective_sample else None
        budget = None if objective is None or objective >= 1 else 1 - objective
        burns = tuple(
            BurnRate(w, None if budget is None or w not in ratios.get(name, {}) else ratios[name][w] / budget)
            for w in windows
        )
        slos.append(
            SloStatus(
                name=name,
                service=objective_sample.labels.get("service") if objective_sample else None,
                objective=objective,
                error_budget_remaining=remaining.get(name),
                burn_rates=burns,
            )
        )
    return tuple(slos)


def _collect_providers(read: _Reader, jobs: Jobs) -> tuple[ProviderStatus, ...]:
    mon = f'job="{jobs.monitor}"'
    api = f'job="{jobs.api}"'
    up = read.by("provider", f"min by (provider) (musdpay_monitor_rpc_up{{{mon}}})")
    sla = read.by("provider", f"max by (provider) (musdpay_monitor_rpc_sla_target_ratio{{{mon}}})")
    states: dict[str, list[str]] = {}
    for s in read.samples(f"max by (provider, state) (musdpay_rpc_provider_state{{{api}}}) == 1"):
        states.setdefault(s.labels.get("provider", ""), []).append(s.labels.get("state", "?"))
    selected = read.by("provider", f"max by (provider) (musdpay_rpc_provider_selected{{{api}}})")
    buckets = f"sum by (le, provider) (rate(musdpay_monitor_rpc_latency_seconds_bucket{{{mon}}}[{LATENCY_WINDOW}]))"
    p50 = read.by("provider", f"histogram_quantile(0.5, {buckets})")
    p99 = read.by("provider", f"histogram_quantile(0.99, {buckets})")
    probes = f"musdpay_monitor_rpc_probes_total{{{mon}}}"
    total = read.by("provider", f"sum by (provider) (increase({probes}[{AVAILABILITY_WINDOW}]))")
    good = read.by(
        "provider",
        f'sum by (provider) (increase(musdpay_monitor_rpc_probes_total{{{mon},outcome="success"}}'
        f"[{AVAILABILITY_WINDOW}]))",
    )
    projected = read.by("provider", f"max by (provider) (musdpay_monitor_rpc_month_credits_projected{{{mon}}})")
    with_api = read.by("provider", "max by (provider) (provider:musdpay_rpc_credits:month_projected)")
    quota = read.by("provider", f"max by (provider) (musdpay_monitor_rpc_month_credit_quota{{{mon}}})")

    names = set(up) | set(sla) | set(states) | set(total) | set(projected)
    providers = []
    for name in names:
        count = total.get(name)
        availability = None if not count else good.get(name, 0.0) / count
        providers.append(
            ProviderStatus(
                name=name,
                up=None if name not in up else up[name] >= 1,
                api_state="/".join(sorted(states[name])) if name in states else None,
                api_selected=None if name not in selected else selected[name] >= 1,
                latency_p50_seconds=p50.get(name),
                latency_p99_seconds=p99.get(name),
                availability=availability,
                probes=count,
                sla_target=sla.get(name),
                credits_projected=projected.get(name),
                credits_projected_with_api=with_api.get(name),
                credit_quota=quota.get(name),
            )
        )
    # The strictest SLA first (the primary), then by name.
    providers.sort(key=lambda p: (-(p.sla_target or 0.0), p.name))
    return tuple(providers)


def _collect_pipeline(read: _Reader, jobs: Jobs) -> PipelineStatus:
    mon = f'job="{jobs.monitor}"'
    api = f'job="{jobs.api}"'
    # The counter has a series per transition once one happened: none while the API is scraped means none yet.
    transitions: dict[str, float] | None = read.by(
        "to_status",
        f"sum by (to_status) (increase(musdpay_onramp_status_transitions_total{{{api}}}[{PIPELINE_WINDOW}]))",
    )
    if not transitions and not read.samples(
        f"count(musdpay_onramp_status_transitions_total{{{api}}}) or max(up{{{api}}}) == 1"
    ):
        transitions = None
    sessions_raw = read.by(
        "outcome", f'max by (outcome) (musdpay_monitor_onramp_sessions{{{mon},window="{PIPELINE_WINDOW}"}})'
    )
    undelivered = read.by("status", f"max by (status) (musdpay_monitor_pipeline_undelivered_sessions{{{mon}}})")
    at_risk = read.decimals_by("currency", f"max by (currency) (musdpay_monitor_pipeline_undelivered_amount{{{mon}}})")
    last_webhook = read.scalar(f"max(musdpay_monitor_pipeline_last_webhook_timestamp_seconds{{{mon}}})")
    last_at = None if not last_webhook else datetime.fromtimestamp(last_webhook, UTC)
    lag_buckets = f"sum by (le) (rate(musdpay_webhook_lag_seconds_bucket{{{api}}}[{LATENCY_WINDOW}]))"
    webhooks = WebhookFreshness(
        last_processed_at=last_at,
        never=None if last_webhook is None else last_webhook == 0,
        silence_seconds=read.scalar(f"max(musdpay_monitor_pipeline_webhook_silence_seconds{{{mon}}})"),
        lag_p99_seconds=read.scalar(f"histogram_quantile(0.99, {lag_buckets})"),
        age_seconds=None if last_at is None else (read.at - last_at).total_seconds(),
    )
    return PipelineStatus(
        transitions=transitions,
        sessions={k: round(v) for k, v in sessions_raw.items()} or None,
        paid_not_delivered=sum(round(v) for v in undelivered.values()) if undelivered else None,
        paid_not_delivered_by_status={k: round(v) for k, v in undelivered.items()} or None,
        amount_at_risk=at_risk or None,
        oldest_undelivered_age_seconds=read.scalar(
            f"max(musdpay_monitor_pipeline_undelivered_oldest_age_seconds{{{mon}}})"
        ),
        stuck_sessions=_count(read.scalar(f"max(musdpay_monitor_pipeline_stuck_sessions{{{mon}}})")),
        open_sessions=_count(read.scalar(f"max(musdpay_monitor_pipeline_open_sessions{{{mon}}})")),
        webhooks=webhooks,
    )


def _collect_stripe(read: _Reader, jobs: Jobs) -> StripeStatus:
    mon = f'job="{jobs.monitor}"'
    up = read.scalar(f"min(musdpay_monitor_stripe_up{{{mon}}})")
    last = read.scalar(f'max(musdpay_monitor_probe_last_success_timestamp_seconds{{{mon},probe="stripe"}})')
    buckets = (
        f'sum by (le) (rate(musdpay_monitor_stripe_request_duration_seconds_bucket{{{mon},operation="balance"}}'
        f"[{LATENCY_WINDOW}]))"
    )
    return StripeStatus(
        up=None if up is None else up >= 1,
        last_success_age_seconds=None if last is None else read.at.timestamp() - last,
        latency_p99_seconds=read.scalar(f"histogram_quantile(0.99, {buckets})"),
    )


def _collect_targets(client: PrometheusClient) -> tuple[TargetStatus, ...]:
    targets = [
        TargetStatus(
            job=str(t.get("labels", {}).get("job", t.get("scrapePool", "?"))),
            instance=str(t.get("labels", {}).get("instance", "?")),
            health=str(t.get("health", "unknown")),
            last_error=str(t.get("lastError")) or None if t.get("lastError") else None,
        )
        for t in client.targets()
    ]
    return tuple(sorted(targets, key=lambda t: (t.job, t.instance)))


def collect_status(client: PrometheusClient, now: datetime, *, jobs: Jobs = DEFAULT_JOBS) -> Status:
    """Everything `musdpay status` shows, from instant queries at `now` (and the alerts and targets as they are).

    Raises `PrometheusUnavailable` when Prometheus cannot be reached, `PrometheusQueryError` on a query it refuses.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    read = _Reader(client, now)
    alerts = _collect_alerts(client)
    return Status(
        prometheus_url=client.url,
        at=now.astimezone(UTC),
        alerts=tuple(a for a in alerts if a.severity != WATCHDOG_SEVERITY),
        watchdog_firing=_watchdog(client, alerts),
        slos=_collect_slos(client, read),
        providers=_collect_providers(read, jobs),
        pipeline=_collect_pipeline(read, jobs),
        stripe=_collect_stripe(read, jobs),
        targets=_collect_targets(client),
    )


# --- JSON -----------------------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _map(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if values is None else dict(sorted(values.items()))


def to_jsonable(status: Status) -> dict[str, Any]:
    """The status as plain JSON types: missing values are null, amounts are decimal strings, times ISO 8601 UTC."""
    p = status.pipeline
    return {
        "schema": SCHEMA,
        "prometheus": status.prometheus_url,
        "at": _iso(status.at),
        "exit_code": status.exit_code,
        "critical_firing": [a.name for a in status.critical_firing],
        "watchdog_firing": status.watchdog_firing,
        "alerts": [
            {
                "name": a.name,
                "state": a.state,
                "severity": a.severity,
                "summary": a.summary,
                "runbook_url": a.runbook_url,
                "active_since": _iso(a.active_since),
                "value": a.value,
                "labels": dict(sorted(a.labels.items())),
            }
            for a in status.alerts
        ],
        "slos": [
            {
                "name": s.name,
                "service": s.service,
                "objective": s.objective,
                "error_budget_remaining": s.error_budget_remaining,
                "burn_rates": {b.window: b.rate for b in s.burn_rates},
                "fastest_burn": None
                if (fastest := s.fastest_burn) is None
                else {"window": fastest.window, "rate": fastest.rate},
            }
            for s in status.slos
        ],
        "rpc": {
            "availability_window": status.availability_window,
            "latency_window": status.latency_window,
            "providers": [
                {
                    "name": r.name,
                    "up": r.up,
                    "api_state": r.api_state,
                    "api_selected": r.api_selected,
                    "latency_p50_seconds": r.latency_p50_seconds,
                    "latency_p99_seconds": r.latency_p99_seconds,
                    "availability": r.availability,
                    "probes": r.probes,
                    "sla_target": r.sla_target,
                    "meets_sla": r.meets_sla,
                    "credits_projected": r.credits_projected,
                    "credits_projected_with_api": r.credits_projected_with_api,
                    "credit_quota": r.credit_quota,
                    "credit_quota_ratio": r.credit_quota_ratio,
                }
                for r in status.providers
            ],
        },
        "pipeline": {
            "window": p.window,
            "transitions": _map(p.transitions),
            "sessions": _map(p.sessions),
            "paid_not_delivered": p.paid_not_delivered,
            "paid_not_delivered_by_status": _map(p.paid_not_delivered_by_status),
            "amount_at_risk": None
            if p.amount_at_risk is None
            else {k: str(v) for k, v in sorted(p.amount_at_risk.items())},
            "oldest_undelivered_age_seconds": p.oldest_undelivered_age_seconds,
            "stuck_sessions": p.stuck_sessions,
            "open_sessions": p.open_sessions,
            "webhooks": {
                "last_processed_at": _iso(p.webhooks.last_processed_at),
                "age_seconds": p.webhooks.age_seconds,
                "never": p.webhooks.never,
                "silence_seconds": p.webhooks.silence_seconds,
                "lag_p99_seconds": p.webhooks.lag_p99_seconds,
            },
        },
        "stripe": {
            "up": status.stripe.up,
            "last_success_age_seconds": status.stripe.last_success_age_seconds,
            "latency_p99_seconds": status.stripe.latency_p99_seconds,
        },
        "targets": [
            {"job": t.job, "instance": t.instance, "health": t.health, "last_error": t.last_error}
            for t in status.targets
        ],
    }


def to_json(status: Status, *, indent: int | None = None) -> str:
    """One JSON document (a single line unless `indent`), for scripts and `--json --watch`."""
    return json.dumps(to_jsonable(status), indent=indent, allow_nan=False)


# --- rendering ------------------------------------------------------------------------------------------------

NO_DATA = Text("no data", style="dim italic")


def _text(value: str | None, style: str = "") -> Text:
    return NO_DATA.copy() if value is None else Text(value, style=style)


def _percent(value: float | None, digits: int = 2) -> str | None:
    return None if value is None else f"{value * 100:.{digits}f}%"


def _seconds(value: float | None) -> str | None:
    if value is None:
        return None
    if abs(value) < 1:
        return f"{value * 1000:.1f} ms"
    total = round(value)
    if total < 60:
        return f"{value:.1f} s"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if not days:
        parts.append(f"{secs}s" if secs else "")
    return " ".join(p for p in parts if p)


def _number(value: float | None) -> str | None:
    if value is None:
        return None
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")


def _flag(value: bool | None, yes: str, no: str) -> Text:
    if value is None:
        return NO_DATA.copy()
    return Text(yes, style="bold green") if value else Text(no, style="bold red")


def _counts(values: Mapping[str, float] | Mapping[str, int] | None) -> Text:
    if values is None:
        return NO_DATA.copy()
    shown = [(k, v) for k, v in sorted(values.items()) if v]
    if not shown:
        return Text("none", style="green")
    return Text(", ".join(f"{k} {_number(float(v))}" for k, v in shown))


def _alerts_table(status: Status) -> Table:
    table = Table(title=f"Alerts ({len(status.alerts)} firing or pending)", title_justify="left", expand=True)
    table.add_column("state")
    table.add_column("severity")
    table.add_column("alert", style="bold")
    table.add_column("since")
    table.add_column("summary, runbook", ratio=1, overflow="fold")
    for a in status.alerts:
        state_style = "bold red" if a.state == "firing" else "yellow"
        severity_style = {"critical": "bold red", "warning": "yellow"}.get(a.severity or "", "")
        since = None if a.active_since is None else _seconds((status.at - a.active_since).total_seconds())
        detail = _text(a.summary)
        detail.append("\n")
        if a.runbook_url:  # on its own line, so that it folds only when the terminal is narrower than the URL
            detail.append(a.runbook_url, style=f"cyan link {a.runbook_url}")
        else:
            detail.append("no runbook", style="dim")
        table.add_row(Text(a.state, style=state_style), _text(a.severity, severity_style), a.name, _text(since), detail)
    if not status.alerts:
        table.add_row(Text("none", style="green"), "", "", "", "")
    return table


def _slo_table(status: Status) -> Table:
    table = Table(title="SLOs", title_justify="left", expand=True)
    table.add_column("SLO", style="bold")
    table.add_column("objective", justify="right")
    table.add_column("budget left", justify="right")
    table.add_column("fastest burn", justify="right")
    table.add_column("burn by window", ratio=2)
    for s in status.slos:
        left = s.error_budget_remaining
        left_style = "" if left is None else ("bold red" if left <= 0 else "yellow" if left < 0.25 else "green")
        fastest = s.fastest_burn
        burn_style = (
            ""
            if fastest is None or fastest.rate is None
            else ("bold red" if fastest.rate >= 6 else "yellow" if fastest.rate >= 1 else "green")
        )
        by_window = Text(" ".join(f"{b.window} {'-' if b.rate is None else f'{b.rate:.2f}'}" for b in s.burn_rates))
        table.add_row(
            s.name,
            _text(_percent(s.objective, 2 if s.objective is None or s.objective * 100 % 1 else 0)),
            _text(_percent(left, 1), left_style),
            _text(
                None if fastest is None or fastest.rate is None else f"{fastest.rate:.2f}x ({fastest.window})",
                burn_style,
            ),
            by_window if any(b.rate is not None for b in s.burn_rates) else NO_DATA.copy(),
        )
    if not status.slos:
        table.add_row(NO_DATA.copy(), "", "", "", "")
    return table


def _providers_table(status: Status) -> Table:
    table = Table(
        title=f"RPC providers (latency over {status.latency_window}, availability over {status.availability_window})",
        title_justify="left",
        expand=True,
    )
    table.add_column("provider", style="bold")
    table.add_column("probe")
    table.add_column("API state")
    table.add_column("p50", justify="right")
    table.add_column("p99", justify="right")
    table.add_column("availability", justify="right")
    table.add_column("SLA", justify="right")
    table.add_column("credits projected / quota", justify="right")
    for r in status.providers:
        state_style = "green" if r.api_state == "healthy" else "bold red"
        selected = " (selected)" if r.api_selected else ""
        meets = r.meets_sla
        availability = _text(
            None if r.availability is None else f"{_percent(r.availability, 3)} of {r.probes or 0:,.0f} probes",
            "" if meets is None else ("green" if meets else "bold red"),
        )
        projected = r.credits_projected_with_api if r.credits_projected_with_api is not None else r.credits_projected
        ratio = r.credit_quota_ratio
        if projected is None:
            credits = NO_DATA.copy()
        else:
            quota = "no quota" if r.credit_quota is None else f"{_number(r.credit_quota)} ({_percent(ratio, 1)})"
            credits = Text(
                f"{_number(projected)} / {quota}", style="yellow" if ratio is not None and ratio > 0.9 else ""
            )
        table.add_row(
            r.name,
            _flag(r.up, "up", "DOWN"),
            _text(None if r.api_state is None else r.api_state + selected, state_style),
            _text(_seconds(r.latency_p50_seconds)),
            _text(_seconds(r.latency_p99_seconds)),
            availability,
            _text(_percent(r.sla_target, 1)),
            credits,
        )
    if not status.providers:
        table.add_row(NO_DATA.copy(), "", "", "", "", "", "", "")
    return table


def _pipeline_table(status: Status) -> Table:
    p = status.pipeline
    w = p.webhooks
    table = Table(title="Payment pipeline", title_justify="left", show_header=False, expand=True)
    table.add_column("what", style="bold")
    table.add_column("value", ratio=3)
    table.add_row(f"status changes, last {p.window}", _counts(p.transitions))
    table.add_row(f"sessions created, last {p.window}", _counts(p.sessions))
    undelivered_style = "" if p.paid_not_delivered is None else ("bold red" if p.paid_not_delivered else "green")
    detail = "" if not p.paid_not_delivered else f" ({_counts(p.paid_not_delivered_by_status).plain})"
    table.add_row(
        "paid, not delivered",
        _text(None if p.paid_not_delivered is None else f"{p.paid_not_delivered}{detail}", undelivered_style),
    )
    at_risk = (
        None
        if p.amount_at_risk is None
        else ", ".join(f"{amount} {currency.upper()}" for currency, amount in sorted(p.amount_at_risk.items()))
    )
    table.add_row("amount at risk", _text(at_risk, "bold red" if p.paid_not_delivered else ""))
    table.add_row(
        "oldest undelivered",
        _text(
            _seconds(p.oldest_undelivered_age_seconds)
            if p.paid_not_delivered
            else (None if p.oldest_undelivered_age_seconds is None else "-")
        ),
    )
    table.add_row("stuck in processing", _text(None if p.stuck_sessions is None else str(p.stuck_sessions)))
    table.add_row("open sessions", _text(None if p.open_sessions is None else str(p.open_sessions)))
    if w.never:
        last = "never"
    elif w.age_seconds is None:
        last = None
    else:
        last = f"{_seconds(w.age_seconds)} ago ({_iso(w.last_processed_at)})"
    table.add_row("last webhook processed", _text(last))
    silence = w.silence_seconds
    table.add_row(
        "webhook silence (sessions open)",
        _text(_seconds(silence) if silence else (None if silence is None else "none"), "bold red" if silence else ""),
    )
    table.add_row(f"webhook lag p99 ({status.latency_window})", _text(_seconds(w.lag_p99_seconds)))
    return table


def _stripe_table(status: Status) -> Table:
    s = status.stripe
    table = Table(title="Stripe", title_justify="left", show_header=False, expand=True)
    table.add_column("what", style="bold")
    table.add_column("value", ratio=3)
    table.add_row("reachable (monitor)", _flag(s.up, "yes", "NO"))
    table.add_row(
        "last good read",
        _text(None if s.last_success_age_seconds is None else f"{_seconds(s.last_success_age_seconds)} ago"),
    )
    table.add_row(f"balance read p99 ({status.latency_window})", _text(_seconds(s.latency_p99_seconds)))
    return table


def _targets_table(status: Status) -> Table:
    table = Table(title="Scrape targets", title_justify="left", expand=True)
    table.add_column("job", style="bold")
    table.add_column("instance")
    table.add_column("health")
    table.add_column("last error", ratio=2, overflow="fold")
    for t in status.targets:
        table.add_row(
            t.job, t.instance, Text(t.health, style="green" if t.health == "up" else "bold red"), t.last_error or ""
        )
    if not status.targets:
        table.add_row(NO_DATA.copy(), "", "", "")
    return table


def _headline(status: Status) -> Text:
    critical = status.critical_firing
    firing = [a for a in status.alerts if a.state == "firing"]
    text = Text(f"musdpay status  {_iso(status.at)}  Prometheus {status.prometheus_url}  ")
    if critical:
        names = ", ".join(sorted({a.name for a in critical}))
        text.append(f"CRITICAL: {names}", style="bold white on red")
    elif firing:
        text.append(f"{len(firing)} alert(s) firing, none critical", style="bold yellow")
    else:
        text.append("nothing firing", style="bold green")
    pending = sum(1 for a in status.alerts if a.state == "pending")
    if pending:
        text.append(f"  ({pending} pending)", style="yellow")
    if status.watchdog_firing is False:
        text.append("  Watchdog not firing: the rules are not being evaluated", style="bold white on red")
    elif status.watchdog_firing:
        text.append("  (Watchdog firing: rules evaluated)", style="dim")
    return text


def render(status: Status) -> RenderableType:
    """The whole view as one rich renderable (print it, or hand it to Live)."""
    parts: Iterable[RenderableType] = (
        _headline(status),
        _alerts_table(status),
        _slo_table(status),
        _providers_table(status),
        _pipeline_table(status),
        _stripe_table(status),
        _targets_table(status),
    )
    return Group(*parts)
