"""The HTML of `musdpay report`: one self-contained page (inline <style>, charts as `data:` PNG, no script, no link
to fetch), built with `html.escape`. Every text from Prometheus goes through `_e`.

Each figure is a cell with `data-figure` (its key), `data-value` (the exact number, empty for no data) and its
PromQL as `title`; each section lists every query it ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from html import escape

from operate import report_charts as charts
from operate.report_model import (
    CENTS,
    AlertEpisode,
    DailyFigures,
    Figure,
    LabelledFigure,
    ProviderCredits,
    Query,
    Report,
)

__all__ = ["render"]

NO_DATA = "no data"

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1c2833; margin: 0 auto;
       max-width: 1000px; padding: 1.5em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #d5dbdb; padding-bottom: 0.2em;
     margin-top: 2em; } h3 { margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d5dbdb; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th { background: #f4f6f6; } td.label, th.label { text-align: left; }
.breach { background: #fadbd8; font-weight: 600; } .ok { color: #1e8449; } .bad { color: #c0392b; font-weight: 600; }
.nodata { color: #7f8c8d; font-style: italic; }
.queries { font-size: 0.85em; background: #f8f9f9; border: 1px solid #e5e8e8; padding: 0.5em 1em; margin: 1em 0; }
.queries code { white-space: pre-wrap; word-break: break-word; } .queries li { margin: 0.3em 0; }
.meta { color: #566573; } img { max-width: 100%; display: block; margin: 0.6em 0; }
nav a { margin-right: 1em; } .note { color: #566573; font-size: 0.9em; }
@media print { nav { display: none; } h2 { page-break-before: auto; } img { page-break-inside: avoid; } }
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: float) -> str:
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours or days:
        parts.append(f"{hours} h")
    parts.append(f"{minutes} min")
    if secs and not days:
        parts.append(f"{secs} s")
    return " ".join(parts)


def percent(value: float, digits: int = 3) -> str:
    return f"{value * 100:.{digits}f}%"


def amount(value: float) -> str:
    """A money amount from Prometheus (a float of major units), shown to the cent."""
    if not math.isfinite(value):
        return str(value)
    return f"{Decimal(repr(value)).quantize(CENTS):,}"


def count(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else str(value)


def seconds_ms(value: float) -> str:
    if math.isinf(value):
        return "above the largest bucket"
    return f"{value * 1000:,.1f} ms"


def _cell(figure: Figure, fmt: Callable[[float], str], *, css: str = "") -> str:
    value = figure.value
    title = _query_text(figure.query)
    if value is None:
        classes = f"nodata {css}".strip()
        return f'<td class="{classes}" data-figure="{_e(figure.key)}" data-value="" title="{_e(title)}">{NO_DATA}</td>'
    return (
        f'<td class="{css}" data-figure="{_e(figure.key)}" data-value="{value!r}" title="{_e(title)}">'
        f"{_e(fmt(value))}</td>"
    )


def _query_text(query: Query) -> str:
    if query.is_range:
        return f"{query.expr}  (range {_time(query.start or 0)} to {_time(query.end or 0)}, step {query.step} s)"
    return f"{query.expr}  (instant at {_time(query.at or 0)})"


def _queries(report: Report, section: str) -> str:
    found = report.sections.get(section)
    if found is None or not found.queries:
        return ""
    items = []
    for query in found.queries:
        if query.is_range:
            when = f"range query from {_time(query.start or 0)} to {_time(query.end or 0)}, step {query.step} s"
        else:
            when = f"instant query at {_time(query.at or 0)}"
        items.append(f"<li><code>{_e(query.expr)}</code><br><span class='note'>{_e(when)}</span></li>")
    return f'<div class="queries"><strong>Queries</strong> ({len(items)})<ol>{"".join(items)}</ol></div>'


def _chart(uri: str | None, alt: str) -> str:
    if uri is None:
        return f'<p class="nodata">{_e(alt)}: no data</p>'
    return f'<img src="{uri}" alt="{_e(alt)}">'


def _table(head: Sequence[str], rows: Iterable[str], *, label_columns: int = 1) -> str:
    cells = "".join(f'<th class="{"label" if i < label_columns else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    body = "".join(rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _label(value: str) -> str:
    return f'<td class="label">{_e(value) if value else "<span class=nodata>(none)</span>"}</td>'


def _header(report: Report) -> str:
    period = report.period
    intervals = (
        f"scrape interval {period.scrape_interval:g} s, evaluation interval {period.evaluation_interval:g} s"
        if report.intervals_known
        else "Prometheus did not say its intervals: 15 s assumed"
    )
    plans = (
        f"plans and prices from the monitor config <code>{_e(report.plans_source)}</code>"
        if report.plans_source
        else "no monitor config read: no plan, no cost"
    )
    return (
        "<header><h1>musdpay: RPC SLA, credits and payments report</h1>"
        f'<p class="meta">Period <strong>{_e(period.describe())}</strong>, from Prometheus at '
        f"<code>{_e(report.prometheus_url)}</code> ({_e(intervals)}); generated {_e(_time(report.generated_at))}; "
        f"{plans}.</p>"
        f'<p class="meta">Days are UTC calendar days (the first and last may be partial: only their part inside the '
        f"period counts). Charts have one point every {period.step} s; rates over {period.rate_window} s. "
        f'"{NO_DATA}" means Prometheus held no sample for it (never 0 or 100%). Every figure shows its PromQL when '
        f"pointed at; each section lists its queries.</p></header>"
        '<nav><a href="#availability">Availability</a><a href="#latency">Latency</a><a href="#credits">Credits and '
        'cost</a><a href="#payments">Payments</a><a href="#fees">Stripe fees</a><a href="#alerts">Alerts</a></nav>'
    )


def _availability(report: Report) -> str:
    out = ['<section id="availability"><h2>RPC provider availability against the SLA</h2>']
    out.append(
        '<p class="note">Availability: the share of the monitor\'s probes (<code>eth_chainId</code> then '
        "<code>eth_blockNumber</code>, every probe interval) that the right chain answered, per UTC day and over the "
        "period, against the provider's target (<code>musdpay_monitor_rpc_sla_target_ratio</code>, as the monitor "
        "exported it). A day below its target is a day that broke the SLA.</p>"
    )
    if not report.availability:
        out.append(f'<p class="nodata">{NO_DATA}: no probe of any provider in this period.</p>')
    rows = []
    for p in report.availability:
        breaches = p.breaches
        verdict = (
            f'<td class="bad">{len(breaches)}</td>'
            if breaches
            else ('<td class="ok">0</td>' if p.target.value is not None else f'<td class="nodata">{NO_DATA}</td>')
        )
        rows.append(
            f"<tr>{_label(p.provider)}{_cell(p.target, lambda v: percent(v, 2))}"
            f"{_cell(p.period, percent)}{verdict}<td>{len(p.days_without_data)}</td></tr>"
        )
    if rows:
        out.append(
            _table(["provider", "SLA target", "over the period", "days below target", "days without data"], rows)
        )
    for p in report.availability:
        out.append(f"<h3>{_e(p.provider)}</h3>")
        breaches = p.breaches
        if p.target.value is None:
            out.append(f'<p class="nodata">No SLA target recorded for {_e(p.provider)}: breaches cannot be told.</p>')
        elif breaches:
            items = "".join(
                f'<li data-day="{day.day.isoformat()}"><strong>{day.day.isoformat()}</strong>'
                f"{' (partial day: ' + _e(_span(day.seconds)) + ')' if not day.full else ''}: "
                f"{_e(percent(f.value or 0.0))} of probes answered, target {_e(percent(p.target.value, 2))}: "
                f"about {_e(_span((1 - (f.value or 0.0)) * day.seconds))} unavailable, "
                f"{_e(_span((1 - p.target.value) * day.seconds))} allowed</li>"
                for day, f in breaches
            )
            out.append(
                f"<p>Days that broke the SLA of {_e(p.provider)}:</p>"
                f'<ul class="breaches" data-provider="{_e(p.provider)}">{items}</ul>'
            )
        else:
            out.append(f'<p class="ok">No day below the target of {_e(p.provider)}.</p>')
        out.append(_chart(charts.availability_chart(p), f"availability of {p.provider} per day"))
    if report.availability:
        head = ["day (UTC)", *(p.provider for p in report.availability)]
        rows = []
        for i, day in enumerate(report.days):
            cells = []
            for p in report.availability:
                f = p.days[i][1]
                target = p.target.value
                css = "breach" if f.value is not None and target is not None and f.value < target else ""
                cells.append(_cell(f, percent, css=css))
            rows.append(f"<tr>{_label(day.day.isoformat() + ('' if day.full else ' (partial)'))}{''.join(cells)}</tr>")
        out.append("<h3>Per day</h3>" + _table(head, rows))
    out.append(_queries(report, "availability") + "</section>")
    return "".join(out)


def _latency(report: Report) -> str:
    out = ['<section id="latency"><h2>RPC latency quantiles</h2>']
    out.append(
        '<p class="note">Duration of the probe\'s <code>eth_blockNumber</code> call (successful probes only), from '
        "the histogram <code>musdpay_monitor_rpc_latency_seconds</code>: over the whole period, and over time "
        f"(rate over {report.period.rate_window} s at each point). Quantiles are interpolated within buckets.</p>"
    )
    if not report.latency:
        out.append(f'<p class="nodata">{NO_DATA}: no latency observed in this period.</p>')
    else:
        head = ["provider", *(f"p{q * 100:g} over the period" for q, _ in report.latency[0].quantiles)]
        rows = [
            f"<tr>{_label(p.provider)}{''.join(_cell(f, seconds_ms) for _, f in p.quantiles)}</tr>"
            for p in report.latency
        ]
        out.append(_table(head, rows))
        for p in report.latency:
            out.append(_chart(charts.latency_chart(p), f"latency quantiles of {p.provider}"))
    out.append(_queries(report, "latency") + "</section>")
    return "".join(out)


def _money_cell(key: str, value: Decimal | None, why: str) -> str:
    if value is None:
        return f'<td class="nodata" data-figure="{_e(key)}" data-value="">{_e(why)}</td>'
    return f'<td data-figure="{_e(key)}" data-value="{value}">${value:,}</td>'


def _credits_row(c: ProviderCredits) -> str:
    plan = c.plan
    why = "no plan" if plan is None else ("no quota" if c.quota_value is None else NO_DATA)
    quota = _cell(c.quota, count)
    if c.quota_from_config and c.quota_value is not None:
        quota = (
            f'<td data-figure="{_e(c.quota.key)}" data-value="{c.quota_value!r}" '
            f'title="from the monitor config (Prometheus holds none)">{count(c.quota_value)} (config)</td>'
        )
    return (
        f"<tr>{_label(c.provider)}"
        f"{_label(plan.name) if plan else '<td class=nodata>no plan</td>'}"
        f"<td>{'$' + f'{plan.monthly_price_usd:,}' if plan else ''}</td>{quota}"
        f"{_cell(c.used, count)}{_money_cell('cost/used/' + c.provider, c.used_cost, why)}"
        f"{_cell(c.projected, count)}{_money_cell('cost/projected/' + c.provider, c.projected_cost, why)}</tr>"
    )


def _credits(report: Report) -> str:
    out = ['<section id="credits"><h2>RPC credits and their cost</h2>']
    out.append(
        '<p class="note">Credits the monitor\'s own requests cost '
        "(<code>musdpay_monitor_rpc_credits_used_total</code>, priced by the provider's credit table), used "
        "within the period; and the monitor's projection of this calendar month "
        "(<code>musdpay_monitor_rpc_month_credits_projected</code>, its last value in the period). "
        "<strong>Cost = credits / monthly credit quota &times; monthly price of the plan</strong>, rounded to the "
        "cent; the plan and price come from the monitor config (<code>rpc.providers.&lt;name&gt;.plan</code>), "
        "the quota from <code>musdpay_monitor_rpc_month_credit_quota</code> (or the config when Prometheus holds "
        "none). The API's own RPC calls are not counted here.</p>"
    )
    if report.plans_source is None:
        out.append(
            '<p class="nodata">No monitor config was read (<code>--monitor-config</code>): no plan, no cost.</p>'
        )
    if not report.credits:
        out.append(f'<p class="nodata">{NO_DATA}: no credits recorded in this period.</p>')
    else:
        head = [
            "provider",
            "plan",
            "monthly price",
            "monthly quota",
            "used in the period",
            "cost of used",
            "month projected",
            "cost projected",
        ]
        out.append(_table(head, (_credits_row(c) for c in report.credits), label_columns=2))
        unplanned = [c.provider for c in report.credits if c.plan is None]
        if unplanned and report.plans_source is not None:
            out.append(
                f'<p class="note">No plan configured for {_e(", ".join(unplanned))}: no cost is computed for it.</p>'
            )
        for c in report.credits:
            if c.projected.value is not None and c.quota_value is not None and c.projected.value > c.quota_value:
                out.append(
                    f'<p class="bad">{_e(c.provider)} is projected over its monthly quota: '
                    f"{count(c.projected.value)} of {count(c.quota_value)} credits.</p>"
                )
            out.append(_chart(charts.credits_chart(c, report.period), f"credits of {c.provider}"))
    out.append(_queries(report, "credits") + "</section>")
    return "".join(out)


def _labelled_rows(found: Sequence[LabelledFigure], fmt: Callable[[float], str]) -> list[str]:
    return [f"<tr>{''.join(_label(v) for v in lf.labels)}{_cell(lf.figure, fmt)}</tr>" for lf in found]


def _daily_table(daily: DailyFigures, fmt: Callable[[float], str], names: Callable[[tuple[str, ...]], str]) -> str:
    keys = daily.label_sets()
    if not keys:
        return f'<p class="nodata">{NO_DATA} on any day.</p>'
    rows = []
    for i, day in enumerate(daily.days):
        cells = "".join(_cell(daily.figures[k][i], fmt) for k in keys)
        rows.append(f"<tr>{_label(day.day.isoformat() + ('' if day.full else ' (partial)'))}{cells}</tr>")
    return _table(["day (UTC)", *(names(k) for k in keys)], rows)


def _stacks(
    daily: DailyFigures, keys: Sequence[tuple[str, ...]], name: Callable[[tuple[str, ...]], str]
) -> list[tuple[str, list[float | None]]]:
    return [(name(k), [f.value for f in daily.figures[k]]) for k in keys]


def _payments(report: Report) -> str:
    p = report.payments
    out = ['<section id="payments"><h2>Payments</h2>']
    out.append(
        '<p class="note">Volume: fiat amount of onramp sessions reaching a final status '
        "(<code>musdpay_onramp_payment_volume_total</code>, major units of the currency). Success: sessions that "
        "reached <code>fulfillment_complete</code> among those that reached a final status, from the status "
        "transitions. Refund, dispute and success ratios: the monitor's gauges per window, their mean, worst and "
        "last value in the period.</p>"
    )
    out.append("<h3>Volume over the period</h3>")
    out.append(
        _table(["currency", "status", "amount"], _labelled_rows(p.volume, amount), label_columns=2)
        if p.volume
        else f'<p class="nodata">{NO_DATA}: no session reached a final status.</p>'
    )
    sessions = _labelled_rows(p.sessions, count)
    success_row = f"<tr>{_label('success rate')}{_cell(p.success, lambda v: percent(v, 2))}</tr>"
    out.append("<h3>Sessions and success</h3>" + _table(["final status", "sessions"], [*sessions, success_row]))
    out.append("<h3>Monitor ratios</h3>")
    rows = []
    for gauge in p.gauges:
        windows = sorted({lf.labels for lf in (*gauge.mean, *gauge.worst, *gauge.last)})
        if not windows:
            rows.append(f"<tr>{_label(gauge.metric)}{_label('')}" + f'<td class="nodata">{NO_DATA}</td>' * 3 + "</tr>")
        for window in windows:
            cells = ""
            for found, what in ((gauge.mean, "mean"), (gauge.worst, "worst"), (gauge.last, "last")):
                match = [lf.figure for lf in found if lf.labels == window]
                figure = match[0] if match else Figure(f"{gauge.metric}/{what}", None, Query(""))
                cells += _cell(figure, lambda v: percent(v, 2))
            rows.append(f"<tr>{_label(gauge.metric)}{_label(window[0])}{cells}</tr>")
    out.append(_table(["gauge", "window", "mean", "worst", "last"], rows, label_columns=2))
    for gauge in p.gauges:
        lines = [(f"window {s.label('window')}", s) for s in gauge.lines.series]
        out.append(_chart(charts.lines_chart(gauge.metric, "%", lines, percent=True), gauge.metric))
    out.append("<h3>Per day</h3>")
    volume_keys = p.daily_volume.label_sets()
    out.append(
        _chart(
            charts.daily_bars(
                "Payment volume per UTC day",
                "major units",
                p.daily_volume.days,
                _stacks(p.daily_volume, volume_keys, lambda k: f"{k[0]} {k[1]}"),
            ),
            "payment volume per day",
        )
    )
    out.append(_daily_table(p.daily_volume, amount, lambda k: f"{k[0]} {k[1]}"))
    out.append(_daily_table(p.daily_success, lambda v: percent(v, 2), lambda _k: "success rate"))
    out.append(_queries(report, "payments") + "</section>")
    return "".join(out)


def _fees(report: Report) -> str:
    f = report.fees
    out = ['<section id="fees"><h2>Stripe fees</h2>']
    out.append(
        '<p class="note">Fees of fulfilled onramp sessions (<code>musdpay_onramp_fees_total</code>, by '
        "<code>fee</code>: <code>transaction</code> or <code>network</code>), in major units of the source "
        "currency.</p>"
    )
    if not f.total and not f.daily.label_sets():
        out.append(f'<p class="nodata">{NO_DATA}: no fee recorded in this period.</p>')
    else:
        out.append(_table(["currency", "fee", "over the period"], _labelled_rows(f.total, amount), label_columns=2))
        for currency in sorted({k[0] for k in f.daily.label_sets()}):
            keys = [k for k in f.daily.label_sets() if k[0] == currency]
            bars = charts.daily_bars(
                f"Stripe fees per UTC day ({currency})", currency, f.daily.days, _stacks(f.daily, keys, lambda k: k[1])
            )
            out.append(_chart(bars, f"Stripe fees per day in {currency}"))
        out.append(_daily_table(f.daily, amount, lambda k: f"{k[0]} {k[1]}"))
    out.append(_queries(report, "fees") + "</section>")
    return "".join(out)


def _episode_row(e: AlertEpisode) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in e.labels)
    start = ("before " if e.open_at_start else "") + _time(e.start)
    end = ("still firing at " if e.open_at_end else "") + _time(e.end)
    return (
        f"<tr>{_label(e.alertname)}{_label(labels)}<td>{_e(start)}</td><td>{_e(end)}</td>"
        f'<td data-seconds="{e.seconds}">{_e(_span(e.seconds))}</td></tr>'
    )


def _alerts(report: Report) -> str:
    a = report.alerts
    out = ['<section id="alerts"><h2>Alerts that fired</h2>']
    out.append(
        f'<p class="note">From Prometheus\'s <code>ALERTS{{alertstate="firing"}}</code> series, read at a resolution '
        f"of <strong>{a.step} s</strong>: each point says whether the alert fired within the {a.step} s before it, "
        f"so starts, ends and durations are exact to within {a.step} s.</p>"
    )
    if not a.episodes:
        out.append('<p class="nodata">No alert fired in this period (or Prometheus evaluated no rules).</p>')
    else:
        rows = [f"<tr>{_label(name)}<td>{n}</td><td>{_e(_span(s))}</td></tr>" for name, n, s in a.totals()]
        out.append(_table(["alert", "times fired", "time firing"], rows))
        out.append(_chart(charts.alert_timeline(a, report.period), "alerts firing over time"))
        out.append(
            _table(
                ["alert", "labels", "from", "to", "firing for"], (_episode_row(e) for e in a.episodes), label_columns=2
            )
        )
    out.append(_queries(report, "alerts") + "</section>")
    return "".join(out)


def render(report: Report) -> str:
    """The whole page."""
    body = "".join(
        (
            _header(report),
            _availability(report),
            _latency(report),
            _credits(report),
            _payments(report),
            _fees(report),
            _alerts(report),
        )
    )
    title = f"musdpay report {report.period.describe()}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>{body}"
        '<footer class="note"><p>Figures come from Prometheus\'s <code>increase()</code> over each window, which '
        "extrapolates to the window's edges: counts may be fractional. Generated by <code>musdpay report</code>."
        "</p></footer></body></html>\n"
    )
