"""What `musdpay report` found: frozen dataclasses built from Prometheus's answers, each figure with its query.

    Report
      period, prometheus_url, plans_source
      availability: tuple[ProviderAvailability]   per provider: SLA target, period availability, each UTC day
      latency: tuple[ProviderLatency]             quantiles over the period and their lines over time
      credits: tuple[ProviderCredits]             used, projected, quota, plan and cost
      payments: Payments                          volume, success, refund and dispute ratios, per day
      fees: Fees                                  Stripe's fees per day and over the period
      alerts: Alerts                              episodes of ALERTS{alertstate="firing"}

A `Figure` whose `value` is None had no data (an absent series, or 0/0): it is shown as "no data", never as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from operate.report_period import Day, Period

__all__ = [
    "CENTS",
    "AlertEpisode",
    "Alerts",
    "DailyFigures",
    "Fees",
    "Figure",
    "LabelledFigure",
    "Payments",
    "Plan",
    "ProviderAvailability",
    "ProviderCredits",
    "ProviderLatency",
    "Query",
    "RangeResult",
    "RatioGauge",
    "Report",
    "Section",
    "Series",
    "cost_of",
    "day_key",
]

CENTS = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL expression as it was sent: an instant query `at` a time, or a range query."""

    expr: str
    at: int | None = None
    start: int | None = None
    end: int | None = None
    step: int | None = None

    @property
    def is_range(self) -> bool:
        return self.step is not None


@dataclass(frozen=True, slots=True)
class Figure:
    """One number of the report; `key` names it in the HTML (`data-figure`), `value` None means no data."""

    key: str
    value: float | None
    query: Query


@dataclass(frozen=True, slots=True)
class LabelledFigure:
    labels: tuple[str, ...]  # the values of the query's `by` labels, in their order
    figure: Figure


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a range query: its labels and its finite points (Unix seconds, value)."""

    labels: tuple[tuple[str, str], ...]
    points: tuple[tuple[float, float], ...]

    def label(self, name: str) -> str:
        return dict(self.labels).get(name, "")


@dataclass(frozen=True, slots=True)
class RangeResult:
    query: Query
    series: tuple[Series, ...]

    def where(self, **labels: str) -> tuple[Series, ...]:
        return tuple(s for s in self.series if all(s.label(k) == v for k, v in labels.items()))


@dataclass(frozen=True, slots=True)
class DailyFigures:
    """One expression evaluated over each UTC day, for each combination of its `by` labels."""

    by: tuple[str, ...]
    days: tuple[Day, ...]
    # labels -> one figure per day (same order as `days`)
    figures: dict[tuple[str, ...], tuple[Figure, ...]]

    def label_sets(self) -> list[tuple[str, ...]]:
        return sorted(self.figures)

    def for_labels(self, labels: tuple[str, ...]) -> tuple[Figure, ...]:
        return self.figures.get(labels, ())


@dataclass(frozen=True, slots=True)
class Section:
    """Every query a section of the report ran, in order (the HTML lists them)."""

    queries: tuple[Query, ...]


@dataclass(frozen=True, slots=True)
class ProviderAvailability:
    provider: str
    target: Figure
    period: Figure
    days: tuple[tuple[Day, Figure], ...]

    @property
    def breaches(self) -> tuple[tuple[Day, Figure], ...]:
        """The days whose availability was below the target (days without data are not breaches: unknown)."""
        target = self.target.value
        if target is None:
            return ()
        return tuple((day, f) for day, f in self.days if f.value is not None and f.value < target)

    @property
    def days_without_data(self) -> tuple[Day, ...]:
        return tuple(day for day, f in self.days if f.value is None)


@dataclass(frozen=True, slots=True)
class ProviderLatency:
    provider: str
    quantiles: tuple[tuple[float, Figure], ...]  # (0.5, p50 over the period), ...
    lines: tuple[tuple[float, Series], ...]  # (0.5, p50 over time), ...


@dataclass(frozen=True, slots=True)
class Plan:
    """A provider's commercial plan, from the monitor config (`rpc.providers.<name>.plan`)."""

    name: str
    monthly_price_usd: Decimal
    monthly_credit_quota: float | None = None  # the config's quota, used when Prometheus holds none


def cost_of(credits: float | None, quota: float | None, price: Decimal | None) -> Decimal | None:
    """credits / quota x monthly price, in whole cents (None when any part is unknown)."""
    if credits is None or quota is None or price is None or quota <= 0 or not math.isfinite(credits):
        return None
    share = Decimal(repr(credits)) / Decimal(repr(quota))
    return (share * price).quantize(CENTS, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class ProviderCredits:
    provider: str
    used: Figure  # credits the monitor spent within the period
    projected: Figure  # the monitor's month projection, its last value in the period
    quota: Figure  # the plan's monthly quota, as the monitor exported it
    plan: Plan | None
    usage: Series | None  # credits per chart step
    projection: Series | None

    @property
    def quota_value(self) -> float | None:
        if self.quota.value is not None:
            return self.quota.value
        return self.plan.monthly_credit_quota if self.plan is not None else None

    @property
    def quota_from_config(self) -> bool:
        return self.quota.value is None and self.quota_value is not None

    @property
    def used_cost(self) -> Decimal | None:
        price = self.plan.monthly_price_usd if self.plan is not None else None
        return cost_of(self.used.value, self.quota_value, price)

    @property
    def projected_cost(self) -> Decimal | None:
        price = self.plan.monthly_price_usd if self.plan is not None else None
        return cost_of(self.projected.value, self.quota_value, price)


@dataclass(frozen=True, slots=True)
class RatioGauge:
    """One of the monitor's ratio gauges, per window label: its mean, worst and last value in the period."""

    metric: str
    worst_is_max: bool
    mean: tuple[LabelledFigure, ...]
    worst: tuple[LabelledFigure, ...]
    last: tuple[LabelledFigure, ...]
    lines: RangeResult


@dataclass(frozen=True, slots=True)
class Payments:
    volume: tuple[LabelledFigure, ...]  # (currency, status) over the period
    sessions: tuple[LabelledFigure, ...]  # (to_status,) sessions reaching a final status
    success: Figure  # fulfilled / (fulfilled + rejected), from the status transitions
    daily_volume: DailyFigures  # by (currency, status)
    daily_success: DailyFigures  # by ()
    gauges: tuple[RatioGauge, ...]


@dataclass(frozen=True, slots=True)
class Fees:
    total: tuple[LabelledFigure, ...]  # (currency, fee) over the period
    daily: DailyFigures  # by (currency, fee)


@dataclass(frozen=True, slots=True)
class AlertEpisode:
    """An alert firing without a gap, as the range query saw it at `step` resolution."""

    alertname: str
    labels: tuple[tuple[str, str], ...]  # every label but alertname and alertstate
    start: int
    end: int
    open_at_start: bool  # already firing when the period began
    open_at_end: bool  # still firing when it ended

    @property
    def seconds(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Alerts:
    query: Query
    step: int
    episodes: tuple[AlertEpisode, ...]

    def totals(self) -> list[tuple[str, int, int]]:
        """(alertname, episodes, seconds firing), longest first."""
        counts: dict[str, list[int]] = {}
        for episode in self.episodes:
            entry = counts.setdefault(episode.alertname, [0, 0])
            entry[0] += 1
            entry[1] += episode.seconds
        return sorted(((name, n, s) for name, (n, s) in counts.items()), key=lambda row: (-row[2], row[0]))


@dataclass(frozen=True, slots=True)
class Report:
    prometheus_url: str
    generated_at: int
    period: Period
    intervals_known: bool  # False: Prometheus's scrape and evaluation intervals were assumed (15 s)
    plans_source: str | None  # the monitor config the plans came from, None when none was read
    availability: tuple[ProviderAvailability, ...]
    latency: tuple[ProviderLatency, ...]
    credits: tuple[ProviderCredits, ...]
    payments: Payments
    fees: Fees
    alerts: Alerts
    sections: dict[str, Section] = field(default_factory=dict)

    @property
    def days(self) -> tuple[Day, ...]:
        return self.period.days()


def day_key(day: date) -> str:
    return day.isoformat()
