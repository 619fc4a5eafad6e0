"""The charts of `musdpay report`: matplotlib figures on the Agg canvas (no display, no pyplot state), returned as
`data:image/png;base64,...` URIs to embed in the HTML. Each function returns None when there is nothing to draw,
and the page says "no data" instead.

Text from Prometheus (label values) reaches matplotlib through `_text`, which escapes `$` so that a label can never
be read as mathtext.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from datetime import UTC

from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure

from operate.report_model import Alerts, ProviderAvailability, ProviderCredits, ProviderLatency, Series
from operate.report_period import Day, Period

__all__ = ["alert_timeline", "availability_chart", "credits_chart", "daily_bars", "latency_chart", "lines_chart"]

BAD = "#c0392b"
GOOD = "#2e86c1"
TARGET = "#7f8c8d"
PALETTE = ("#2e86c1", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#d35400", "#2c3e50")


def _text(value: str, limit: int = 90) -> str:
    """A label for matplotlib: `$` escaped (no mathtext), cut at `limit` characters."""
    if len(value) > limit:
        value = value[: limit - 1] + "\u2026"
    return value.replace("$", r"\$")


def _figure(height: float = 3.0, rows: int = 1, *, left: float = 0.09) -> tuple[MplFigure, list[Axes]]:
    # Fixed margins: a layout engine would measure every tick label again (half the time of a chart).
    figure = MplFigure(figsize=(9.0, height), dpi=100)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=left, right=0.98, top=1 - 0.3 / height, bottom=0.45 / height, hspace=0.45)
    axes = [figure.add_subplot(rows, 1, i + 1) for i in range(rows)]
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _uri(figure: MplFigure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _utc(seconds: float) -> float:
    """matplotlib's date number of a Unix time (days since its default epoch, 1970-01-01 UTC)."""
    return seconds / 86400


def _time_axis(ax: Axes) -> None:
    locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]


def _day_centres(days: Sequence[Day]) -> list[float]:
    return [_utc((day.start + day.end) / 2) for day in days]


def _day_widths(days: Sequence[Day]) -> list[float]:
    return [day.seconds / 86400 * 0.8 for day in days]  # matplotlib dates are in days


def availability_chart(provider: ProviderAvailability) -> str | None:
    """Each day's availability as a bar (red below the target), with the target as a line."""
    values = [f.value for _, f in provider.days]
    if all(v is None for v in values):
        return None
    days = [day for day, _ in provider.days]
    target = provider.target.value
    known = [v * 100 for v in values if v is not None]
    heights = [v * 100 if v is not None else 0.0 for v in values]
    colours = [BAD if v is not None and target is not None and v < target else GOOD for v in values]
    figure, (ax,) = _figure()
    ax.bar(_day_centres(days), heights, width=_day_widths(days), color=colours)
    floor = min([*known, *([target * 100] if target is not None else [])])
    if target is not None:
        ax.axhline(target * 100, color=TARGET, linestyle="--", label=f"SLA target {target * 100:g}%")
        ax.legend(loc="lower left")
    ax.set_ylim(max(0.0, floor - max((100 - floor) * 0.5, 0.05)), 100.0 + max((100 - floor) * 0.05, 0.005))
    ax.set_ylabel("available (%)")
    ax.set_title(_text(f"{provider.provider}: probes answered per UTC day"))
    _time_axis(ax)
    return _uri(figure)


def latency_chart(provider: ProviderLatency) -> str | None:
    lines = [(q, s) for q, s in provider.lines if s.points]
    if not lines:
        return None
    figure, (ax,) = _figure()
    for i, (q, series) in enumerate(lines):
        times = [_utc(t) for t, _ in series.points]
        ax.plot(times, [v * 1000 for _, v in series.points], label=f"p{q * 100:g}", color=PALETTE[i % len(PALETTE)])
    ax.set_ylabel("eth_blockNumber (ms)")
    ax.set_title(_text(f"{provider.provider}: probe latency quantiles"))
    ax.legend(loc="best")
    _time_axis(ax)
    return _uri(figure)


def credits_chart(provider: ProviderCredits, period: Period) -> str | None:
    usage = provider.usage.points if provider.usage is not None else ()
    projection = provider.projection.points if provider.projection is not None else ()
    if not usage and not projection:
        return None
    figure, (top, bottom) = _figure(height=4.5, rows=2)
    if projection:
        top.plot([_utc(t) for t, _ in projection], [v for _, v in projection], color=GOOD, label="month projected")
    quota = provider.quota_value
    if quota is not None:
        top.axhline(quota, color=BAD, linestyle="--", label=f"monthly quota {quota:,.0f}")
    top.set_ylabel("credits / month")
    top.set_title(_text(f"{provider.provider}: credits projected against the quota, and used per step"))
    if projection or quota is not None:
        top.legend(loc="upper left")
    _time_axis(top)
    if usage:  # one stairs artist, not a bar per step: each point covers the step before it
        edges = [_utc(usage[0][0] - period.step), *(_utc(t) for t, _ in usage)]
        bottom.stairs([v for _, v in usage], edges, fill=True, color=TARGET)
    bottom.set_ylabel(f"credits per {period.step} s")
    _time_axis(bottom)
    return _uri(figure)


def daily_bars(
    title: str, ylabel: str, days: Sequence[Day], stacks: Sequence[tuple[str, Sequence[float | None]]]
) -> str | None:
    """Stacked bars per UTC day, one stack per label (a day without data draws nothing)."""
    if not stacks or all(v is None for _, values in stacks for v in values):
        return None
    figure, (ax,) = _figure()
    centres, widths = _day_centres(days), _day_widths(days)
    base = [0.0] * len(days)
    for i, (label, values) in enumerate(stacks):
        heights = [v if v is not None else 0.0 for v in values]
        ax.bar(centres, heights, width=widths, bottom=base, label=_text(label), color=PALETTE[i % len(PALETTE)])
        base = [b + h for b, h in zip(base, heights, strict=True)]
    ax.set_ylabel(_text(ylabel))
    ax.set_title(_text(title))
    ax.legend(loc="upper left", fontsize="small")
    _time_axis(ax)
    return _uri(figure)


def lines_chart(title: str, ylabel: str, lines: Sequence[tuple[str, Series]], *, percent: bool = False) -> str | None:
    drawn = [(label, s) for label, s in lines if s.points]
    if not drawn:
        return None
    scale = 100.0 if percent else 1.0
    figure, (ax,) = _figure()
    for i, (label, series) in enumerate(drawn):
        ax.plot(
            [_utc(t) for t, _ in series.points],
            [v * scale for _, v in series.points],
            label=_text(label),
            color=PALETTE[i % len(PALETTE)],
        )
    ax.set_ylabel(_text(ylabel))
    ax.set_title(_text(title))
    ax.legend(loc="upper left", fontsize="small")
    _time_axis(ax)
    return _uri(figure)


def alert_timeline(alerts: Alerts, period: Period) -> str | None:
    """One row per alert name, a bar for each time it fired."""
    if not alerts.episodes:
        return None
    names = sorted({e.alertname for e in alerts.episodes})
    figure, (ax,) = _figure(height=max(1.6, 0.45 * len(names) + 1.0), left=0.25)
    for row, name in enumerate(names):
        spans = [(_utc(e.start), e.seconds / 86400) for e in alerts.episodes if e.alertname == name]
        ax.broken_barh(spans, (row - 0.35, 0.7), color=BAD)
    ax.set_yticks(range(len(names)), [_text(name) for name in names])
    ax.set_xlim(_utc(period.start), _utc(period.end))
    ax.set_title(f"Alerts firing (resolution {alerts.step} s)")
    _time_axis(ax)
    return _uri(figure)
