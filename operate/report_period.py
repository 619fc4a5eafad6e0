"""The time range of `musdpay report`: durations (`30d`, `24h`, `90m`), its UTC days, and the steps its queries use.

period = Period.of(start, end, scrape_interval=15, evaluation_interval=15)
period.step          # charts: the range / 200, never finer than the scrape interval
period.rate_window   # rate() over the chart step, at least 4 scrape intervals (two samples at least)
period.alert_step    # ALERTS: the range / 10000, never finer than the evaluation interval
period.days()        # the UTC calendar days the range touches; the first and last may be partial
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

__all__ = ["DAY_SECONDS", "Day", "Period", "parse_duration", "parse_time", "promql_duration"]

DAY_SECONDS = 86400
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": DAY_SECONDS, "w": 7 * DAY_SECONDS, "y": 365 * DAY_SECONDS}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
CHART_POINTS = 200  # points per chart line
ALERT_POINTS = 10000  # Prometheus refuses more than 11,000 points per series


def parse_duration(text: str) -> float:
    """Seconds of a Prometheus-style duration: `30d`, `24h`, `90m`, `1h30m`, `15s`. ValueError otherwise."""
    text = text.strip()
    parts = _DURATION.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a duration: {text!r} (examples: 30d, 7d, 24h, 90m, 1h30m)")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"not a positive duration: {text!r}")
    return seconds


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (`2026-05-01`, `2026-05-01T12:00:00Z`; UTC when no offset is given) or Unix seconds."""
    text = text.strip()
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (ISO 8601 such as 2026-05-01T00:00:00Z, or Unix seconds)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def promql_duration(seconds: float) -> str:
    """A range selector's duration in whole seconds (`[86400s]`), or days when it is a whole number of them."""
    whole = max(1, round(seconds))
    return f"{whole // DAY_SECONDS}d" if whole % DAY_SECONDS == 0 else f"{whole}s"


@dataclass(frozen=True, slots=True)
class Day:
    """One UTC calendar day of the range, or the part of it inside the range (`start` and `end` in Unix seconds)."""

    day: date
    start: int
    end: int

    @property
    def seconds(self) -> int:
        return self.end - self.start

    @property
    def full(self) -> bool:
        return self.seconds == DAY_SECONDS


@dataclass(frozen=True, slots=True)
class Period:
    """The report's range in whole Unix seconds, with the intervals Prometheus scrapes and evaluates at."""

    start: int
    end: int
    scrape_interval: float
    evaluation_interval: float

    @classmethod
    def of(cls, start: datetime, end: datetime, *, scrape_interval: float, evaluation_interval: float) -> Period:
        first, last = math.floor(start.timestamp()), math.floor(end.timestamp())
        if last <= first:
            raise ValueError("the report's end must come after its start")
        return cls(first, last, scrape_interval, evaluation_interval)

    @property
    def seconds(self) -> int:
        return self.end - self.start

    @property
    def step(self) -> int:
        return max(math.ceil(self.seconds / CHART_POINTS), math.ceil(self.scrape_interval), 1)

    @property
    def rate_window(self) -> int:
        return max(self.step, math.ceil(4 * self.scrape_interval))

    @property
    def alert_step(self) -> int:
        return max(math.ceil(self.seconds / ALERT_POINTS), math.ceil(self.evaluation_interval), 1)

    def days(self) -> tuple[Day, ...]:
        days: list[Day] = []
        cursor = self.start
        while cursor < self.end:
            day = datetime.fromtimestamp(cursor, tz=UTC).date()
            midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) + DAY_SECONDS
            days.append(Day(day, cursor, min(midnight, self.end)))
            cursor = days[-1].end
        return tuple(days)

    @staticmethod
    def utc(seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, tz=UTC)

    def describe(self) -> str:
        days, rest = divmod(self.seconds, DAY_SECONDS)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        units = (("d", days), ("h", hours), ("min", minutes), ("s", seconds))
        span = " ".join(f"{n} {unit}" for unit, n in units if n) or "0 s"
        return f"{_iso(self.start)} to {_iso(self.end)} ({span})"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
