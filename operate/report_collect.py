"""Collecting `musdpay report`'s figures from Prometheus: every query is listed here, and each one it ran is kept.

Per-day figures are one range query with a step of one day over the whole days of the period (evaluated at each
midnight, over `[1d]`), plus an instant query for a partial first or last day (over the part inside the period).
Period figures are instant queries at the end of the period over `[<period>]`. Charts are range queries at the
period's step. `0/0` (a ratio of nothing) and absent series are "no data", never 0 or 100%.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from operate.prometheus import PrometheusClient, PrometheusQueryError
from operate.report_model import (
    AlertEpisode,
    Alerts,
    DailyFigures,
    Fees,
    Figure,
    LabelledFigure,
    Payments,
    Plan,
    ProviderAvailability,
    ProviderCredits,
    ProviderLatency,
    Query,
    RangeResult,
    RatioGauge,
    Report,
    Section,
    Series,
    day_key,
)
from operate.report_period import DAY_SECONDS, Period, parse_duration, promql_duration

__all__ = ["QUERIES", "collect", "prometheus_intervals"]

DEFAULT_INTERVAL = 15.0  # Prometheus's own default is 1m; ours (prometheus.yml) is 15s
QUANTILES = (0.5, 0.9, 0.99)

# Every expression of the report; `{w}` is the range of the window (a day, the period, a chart step).
QUERIES = {
    # Share of the monitor's probes that succeeded; `or ... * 0` keeps a provider that only failed at 0%.
    "availability": (
        '(sum by (provider) (increase(musdpay_monitor_rpc_probes_total{{outcome="success"}}[{w}]))'
        " or 0 * sum by (provider) (increase(musdpay_monitor_rpc_probes_total[{w}])))"
        " / sum by (provider) (increase(musdpay_monitor_rpc_probes_total[{w}]))"
    ),
    "sla_target": "max by (provider) (last_over_time(musdpay_monitor_rpc_sla_target_ratio[{w}]))",
    "latency_period": (
        "histogram_quantile({q}, sum by (le, provider) (increase(musdpay_monitor_rpc_latency_seconds_bucket[{w}])))"
    ),
    "latency_line": (
        "histogram_quantile({q}, sum by (le, provider) (rate(musdpay_monitor_rpc_latency_seconds_bucket[{w}])))"
    ),
    "credits_used": "sum by (provider) (increase(musdpay_monitor_rpc_credits_used_total[{w}]))",
    "credits_projected": "sum by (provider) (last_over_time(musdpay_monitor_rpc_month_credits_projected[{w}]))",
    "credits_projected_line": "sum by (provider) (musdpay_monitor_rpc_month_credits_projected)",
    "credit_quota": "max by (provider) (last_over_time(musdpay_monitor_rpc_month_credit_quota[{w}]))",
    "volume": "sum by (currency, status) (increase(musdpay_onramp_payment_volume_total[{w}]))",
    "sessions": (
        "sum by (to_status) (increase(musdpay_onramp_status_transitions_total"
        '{{to_status=~"fulfillment_complete|rejected"}}[{w}]))'
    ),
    # Sessions reaching a final status that ended fulfilled (the onramp-fulfillment SLO's SLI).
    "success": (
        "(sum(increase(musdpay_onramp_status_transitions_total"
        '{{to_status="fulfillment_complete"}}[{w}])) or 0 * sum(increase(musdpay_onramp_status_transitions_total'
        '{{to_status="rejected"}}[{w}])))'
        " / sum(increase(musdpay_onramp_status_transitions_total"
        '{{to_status=~"fulfillment_complete|rejected"}}[{w}]))'
    ),
    "gauge_mean": "avg by (window) (avg_over_time({metric}[{w}]))",
    "gauge_max": "max by (window) (max_over_time({metric}[{w}]))",
    "gauge_min": "min by (window) (min_over_time({metric}[{w}]))",
    "gauge_last": "avg by (window) (last_over_time({metric}[{w}]))",
    "gauge_line": "avg by (window) ({metric})",
    "fees": "sum by (currency, fee) (increase(musdpay_onramp_fees_total[{w}]))",
    # 1 at each step where the alert fired at least once within the step before it.
    "alerts": 'present_over_time(ALERTS{{alertstate="firing"}}[{w}])',
}

GAUGES = (
    ("musdpay_monitor_onramp_success_ratio", False),  # (metric, worst is the max)
    ("musdpay_monitor_stripe_refund_ratio", True),
    ("musdpay_monitor_stripe_dispute_ratio", True),
)


def _value(raw: Any) -> float | None:
    """A sample value; NaN (0/0, or a quantile of no observations) is no data. Infinities are kept."""
    value = float(raw)
    return None if math.isnan(value) else value


def prometheus_intervals(client: PrometheusClient) -> tuple[float, float, bool]:
    """(scrape interval, evaluation interval, known) from Prometheus's configuration; 15 s each if unknown."""
    try:
        config = yaml.safe_load(client.status_config()) or {}
        defaults = config.get("global") or {}
        return (
            parse_duration(str(defaults.get("scrape_interval", "1m"))),
            parse_duration(str(defaults.get("evaluation_interval", "1m"))),
            True,
        )
    except (PrometheusQueryError, yaml.YAMLError, ValueError, AttributeError):
        return DEFAULT_INTERVAL, DEFAULT_INTERVAL, False


class _Collector:
    def __init__(self, client: PrometheusClient, period: Period) -> None:
        self.client = client
        self.period = period
        self.ran: list[Query] = []

    def take(self) -> Section:
        section = Section(tuple(dict.fromkeys(self.ran)))
        self.ran = []
        return section

    def instant(self, expr: str, at: int | None = None) -> tuple[Query, list[dict[str, Any]]]:
        query = Query(expr, at=self.period.end if at is None else at)
        self.ran.append(query)
        return query, self.client.query(expr, at=query.at)

    def over_period(self, template: str, by: tuple[str, ...], key: str, **fill: Any) -> _Found:
        query, result = self.instant(template.format(w=promql_duration(self.period.seconds), **fill))
        found = []
        for item in result:
            labels = tuple(item["metric"].get(name, "") for name in by)
            found.append(LabelledFigure(labels, Figure(_key(key, *labels), _value(item["value"][1]), query)))
        return _Found(query, key, tuple(sorted(found, key=lambda lf: lf.labels)))

    def range(self, expr: str, *, step: int | None = None, start: int | None = None) -> RangeResult:
        step = self.period.step if step is None else step
        query = Query(expr, start=self.period.start if start is None else start, end=self.period.end, step=step)
        self.ran.append(query)
        result = self.client.query_range(expr, query.start or 0, query.end or 0, step)
        series = []
        for item in result:
            points = tuple(
                (float(t), v) for t, raw in item["values"] if (v := _value(raw)) is not None and math.isfinite(v)
            )
            series.append(Series(tuple(sorted(item["metric"].items())), points))
        return RangeResult(query, tuple(sorted(series, key=lambda s: s.labels)))

    def daily(self, template: str, by: tuple[str, ...], key: str) -> DailyFigures:
        """`template` over each UTC day of the period (`{w}`: the day, or the part of it in the period)."""
        days = self.period.days()
        values: dict[tuple[str, ...], dict[int, float | None]] = {}
        query_of: dict[int, Query] = {}
        full = [day for day in days if day.full]
        if full:  # one range query, evaluated at each midnight over the day before it
            expr = template.format(w="1d")
            query = Query(expr, start=full[0].end, end=full[-1].end, step=DAY_SECONDS)
            self.ran.append(query)
            for day in full:
                query_of[day.end] = query
            for item in self.client.query_range(expr, full[0].end, full[-1].end, DAY_SECONDS):
                labels = tuple(item["metric"].get(name, "") for name in by)
                for t, raw in item["values"]:
                    values.setdefault(labels, {})[round(float(t))] = _value(raw)
        for day in days:
            if day.full:
                continue
            query, result = self.instant(template.format(w=promql_duration(day.seconds)), at=day.end)
            query_of[day.end] = query
            for item in result:
                labels = tuple(item["metric"].get(name, "") for name in by)
                values.setdefault(labels, {})[day.end] = _value(item["value"][1])
        figures = {
            labels: tuple(
                Figure(_key(key, *labels, day_key(day.day)), by_end.get(day.end), query_of[day.end]) for day in days
            )
            for labels, by_end in values.items()
        }
        return DailyFigures(by, days, figures)


def _key(*parts: str) -> str:
    return "/".join(part for part in parts if part != "")


@dataclass(frozen=True, slots=True)
class _Found:
    """An instant query over the period and the figures it gave, one per combination of its `by` labels."""

    query: Query
    key: str
    figures: tuple[LabelledFigure, ...]

    def labels(self) -> set[str]:
        return {lf.labels[0] for lf in self.figures if lf.labels}

    def get(self, *labels: str) -> Figure:
        """The figure of these labels, or a "no data" figure of the same query."""
        for item in self.figures:
            if item.labels == labels:
                return item.figure
        return Figure(_key(self.key, *labels), None, self.query)


def _availability(c: _Collector) -> tuple[ProviderAvailability, ...]:
    targets = c.over_period(QUERIES["sla_target"], ("provider",), "sla-target")
    period = c.over_period(QUERIES["availability"], ("provider",), "availability")
    daily = c.daily(QUERIES["availability"], ("provider",), "availability")
    providers = sorted(targets.labels() | period.labels() | {labels[0] for labels in daily.label_sets()})
    result = []
    for provider in providers:
        figures = daily.for_labels((provider,)) or tuple(
            Figure(_key("availability", provider, day_key(day.day)), None, period.query) for day in daily.days
        )
        whole = period.get(provider)
        result.append(
            ProviderAvailability(
                provider=provider,
                target=targets.get(provider),
                period=Figure(_key("availability", provider, "period"), whole.value, whole.query),
                days=tuple(zip(daily.days, figures, strict=True)),
            )
        )
    return tuple(result)


def _latency(c: _Collector) -> tuple[ProviderLatency, ...]:
    period: dict[float, _Found] = {}
    lines: dict[float, RangeResult] = {}
    for q in QUANTILES:
        period[q] = c.over_period(QUERIES["latency_period"], ("provider",), f"latency/{q}", q=q)
        lines[q] = c.range(QUERIES["latency_line"].format(q=q, w=promql_duration(c.period.rate_window)))
    providers = sorted(
        {p for found in period.values() for p in found.labels()}
        | {s.label("provider") for result in lines.values() for s in result.series}
    )
    result = []
    for provider in providers:
        quantiles = tuple((q, period[q].get(provider)) for q in QUANTILES)
        provider_lines = tuple((q, s) for q in QUANTILES for s in lines[q].where(provider=provider))
        result.append(ProviderLatency(provider, quantiles, provider_lines))
    return tuple(result)


def _credits(c: _Collector, plans: Mapping[str, Plan]) -> tuple[ProviderCredits, ...]:
    used = c.over_period(QUERIES["credits_used"], ("provider",), "credits/used")
    projected = c.over_period(QUERIES["credits_projected"], ("provider",), "credits/projected")
    quota = c.over_period(QUERIES["credit_quota"], ("provider",), "credits/quota")
    usage = c.range(QUERIES["credits_used"].format(w=promql_duration(c.period.step)))
    projection = c.range(QUERIES["credits_projected_line"])
    providers = sorted(
        used.labels()
        | projected.labels()
        | quota.labels()
        | {s.label("provider") for s in (*usage.series, *projection.series)}
        | set(plans)
    )
    result = []
    for provider in providers:
        usage_series = usage.where(provider=provider)
        projection_series = projection.where(provider=provider)
        result.append(
            ProviderCredits(
                provider=provider,
                used=used.get(provider),
                projected=projected.get(provider),
                quota=quota.get(provider),
                plan=plans.get(provider),
                usage=usage_series[0] if usage_series else None,
                projection=projection_series[0] if projection_series else None,
            )
        )
    return tuple(result)


def _payments(c: _Collector) -> Payments:
    volume = c.over_period(QUERIES["volume"], ("currency", "status"), "volume")
    sessions = c.over_period(QUERIES["sessions"], ("to_status",), "sessions")
    success = c.over_period(QUERIES["success"], (), "success/period").get()
    daily_volume = c.daily(QUERIES["volume"], ("currency", "status"), "volume")
    daily_success = c.daily(QUERIES["success"], (), "success")
    gauges = []
    for metric, worst_is_max in GAUGES:
        name = metric.removeprefix("musdpay_monitor_")
        gauges.append(
            RatioGauge(
                metric=metric,
                worst_is_max=worst_is_max,
                mean=c.over_period(QUERIES["gauge_mean"], ("window",), f"{name}/mean", metric=metric).figures,
                worst=c.over_period(
                    QUERIES["gauge_max" if worst_is_max else "gauge_min"], ("window",), f"{name}/worst", metric=metric
                ).figures,
                last=c.over_period(QUERIES["gauge_last"], ("window",), f"{name}/last", metric=metric).figures,
                lines=c.range(QUERIES["gauge_line"].format(metric=metric)),
            )
        )
    return Payments(volume.figures, sessions.figures, success, daily_volume, daily_success, tuple(gauges))


def _fees(c: _Collector) -> Fees:
    return Fees(
        total=c.over_period(QUERIES["fees"], ("currency", "fee"), "fees").figures,
        daily=c.daily(QUERIES["fees"], ("currency", "fee"), "fees"),
    )


def _alerts(c: _Collector) -> Alerts:
    step = c.period.alert_step
    # Each point covers the step before it, so the first point is one step in: nothing before the period counts.
    first = min(c.period.start + step, c.period.end)
    result = c.range(QUERIES["alerts"].format(w=promql_duration(step)), step=step, start=first)
    episodes = []
    for series in result.series:
        labels = dict(series.labels)
        alertname = labels.pop("alertname", "")
        labels.pop("alertstate", None)
        labels.pop("__name__", None)
        times = sorted(round(t) for t, _ in series.points)
        runs: list[list[int]] = []
        for t in times:
            if runs and t - runs[-1][-1] <= step:
                runs[-1].append(t)
            else:
                runs.append([t])
        for run in runs:
            episodes.append(
                AlertEpisode(
                    alertname=alertname,
                    labels=tuple(sorted(labels.items())),
                    start=max(run[0] - step, c.period.start),
                    end=run[-1],
                    open_at_start=run[0] <= first,
                    open_at_end=run[-1] + step > c.period.end,
                )
            )
    episodes.sort(key=lambda e: (e.start, e.alertname, e.labels))
    return Alerts(result.query, step, tuple(episodes))


def collect(
    client: PrometheusClient,
    period: Period,
    *,
    plans: Mapping[str, Plan],
    plans_source: str | None,
    intervals_known: bool,
    generated_at: int,
) -> Report:
    """Run every query of the report and build its model. Raises the client's `PrometheusError`s."""
    c = _Collector(client, period)
    sections: dict[str, Section] = {}

    def section(name: str, build: Callable[[], Any]) -> Any:
        built = build()
        sections[name] = c.take()
        return built

    availability = section("availability", lambda: _availability(c))
    latency = section("latency", lambda: _latency(c))
    credits = section("credits", lambda: _credits(c, plans))
    payments = section("payments", lambda: _payments(c))
    fees = section("fees", lambda: _fees(c))
    alerts = section("alerts", lambda: _alerts(c))
    return Report(
        prometheus_url=client.url,
        generated_at=generated_at,
        period=period,
        intervals_known=intervals_known,
        plans_source=plans_source,
        availability=availability,
        latency=latency,
        credits=credits,
        payments=payments,
        fees=fees,
        alerts=alerts,
        sections=sections,
    )
