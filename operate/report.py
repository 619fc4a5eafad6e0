"""`musdpay report`: a self-contained HTML report of a period, from Prometheus's HTTP API, for people who would
rather look than read, and the evidence an operator sends with an SLA credit claim.

    generate(prometheus_url="http://127.0.0.1:9090", since="30d", until=None, out=Path("report.html"),
             plans={"spectrum": Plan("Spectrum Business", Decimal(169), 10_000_000)}, plans_source="monitor.yml")

The parts: `report_period` (durations, UTC days, steps), `report_collect` (every query, and the model built from
their answers: `report_model`), `report_charts` (matplotlib on the Agg canvas, PNG as `data:` URIs) and
`report_html` (the page, inline style only, every label escaped). The plans come from the caller (the CLI reads
them from the monitor config), so this package reads nothing but Prometheus.

Errors: `ReportError`, one line that says what to fix (a bad duration or time, Prometheus unreachable, a query
refused).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from operate.prometheus import PrometheusClient, PrometheusError
from operate.report_collect import collect, prometheus_intervals
from operate.report_html import render
from operate.report_model import Plan, Report
from operate.report_period import Period, parse_duration, parse_time

__all__ = ["Plan", "Report", "ReportError", "build", "generate", "parse_duration", "parse_time"]

QUERY_TIMEOUT = 60.0  # a 30-day increase() over many series can take a while


class ReportError(Exception):
    """The report cannot be made; the message says why, in one line."""


def build(
    client: PrometheusClient,
    *,
    since: str,
    until: str | None = None,
    plans: Mapping[str, Plan] | None = None,
    plans_source: str | None = None,
    now: datetime | None = None,
) -> Report:
    """Query Prometheus and build the report's model (no HTML yet)."""
    try:
        seconds = parse_duration(since)
        end = parse_time(until) if until else (now or datetime.now(UTC))
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    start = end - timedelta(seconds=seconds)
    try:
        client.query("vector(1)")  # reachable, and its API answers: say so before anything else
        scrape, evaluation, known = prometheus_intervals(client)
        period = Period.of(start, end, scrape_interval=scrape, evaluation_interval=evaluation)
        return collect(
            client,
            period,
            plans=plans or {},
            plans_source=plans_source,
            intervals_known=known,
            generated_at=round(time.time()),
        )
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    except PrometheusError as exc:
        raise ReportError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def generate(
    *,
    prometheus_url: str,
    since: str,
    until: str | None,
    out: Path,
    plans: Mapping[str, Plan] | None = None,
    plans_source: str | None = None,
) -> Path:
    """Write the report of `since` before `until` (default: now) to `out`; returns its path."""
    with PrometheusClient(prometheus_url, timeout=QUERY_TIMEOUT) as client:
        report = build(client, since=since, until=until, plans=plans, plans_source=plans_source)
    page = render(report)
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {out}: {exc.strerror}") from None
    return out
