"""Onramp success and volume over windows, read from the payment database.

Each window (e.g. `1h`, `24h`) is the cohort of sessions created within it, each with one outcome:
`fulfilled` (fulfillment_complete), `rejected`, `abandoned` (still initialized or requires_payment
`abandoned_after_seconds` after creation) or `pending` (anything else: being paid, processing, just created).
The success ratio is fulfilled over fulfilled + rejected + abandoned; it is absent while none has ended.
Volume is the fiat amount of the fulfilled sessions, by currency. The Stripe probe divides its refund and
dispute counts by the same window's fulfilled count (`PaymentsState`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from monitor.config import PaymentsConfig
from monitor.db import DbRunner
from monitor.metrics import MonitorMetrics, remove_series
from monitor.scheduler import ProbeFailed, ProbeJob
from payment.onramp.models import OnrampSession
from payment.onramp.status import SessionStatus

__all__ = ["OUTCOMES", "PaymentsProbe", "PaymentsState", "WindowReading", "read_window"]

OUTCOMES = ("fulfilled", "rejected", "abandoned", "pending")
_WAITING = (SessionStatus.initialized.value, SessionStatus.requires_payment.value)


@dataclass(frozen=True)
class WindowReading:
    sessions: dict[str, int]  # by outcome
    volume: dict[str, Decimal]  # fulfilled fiat amount by currency

    @property
    def success_ratio(self) -> float | None:
        ended = self.sessions["fulfilled"] + self.sessions["rejected"] + self.sessions["abandoned"]
        return self.sessions["fulfilled"] / ended if ended else None


@dataclass
class PaymentsState:
    """The latest reading of each window, shared with the Stripe probe."""

    windows: dict[str, WindowReading] = field(default_factory=dict)

    def fulfilled(self, window: str) -> int | None:
        reading = self.windows.get(window)
        return None if reading is None else reading.sessions["fulfilled"]


def read_window(engine: Engine, *, seconds: float, abandoned_after: float, now: datetime) -> WindowReading:
    since = now - timedelta(seconds=seconds)
    abandoned_before = now - timedelta(seconds=abandoned_after)
    sessions = dict.fromkeys(OUTCOMES, 0)
    volume: dict[str, Decimal] = defaultdict(Decimal)
    with Session(engine) as db:
        in_window = (OnrampSession.created_at >= since, OnrampSession.status != SessionStatus.creating.value)
        by_status = db.execute(
            select(OnrampSession.status, func.count()).where(*in_window).group_by(OnrampSession.status)
        ).all()
        abandoned = db.execute(
            select(func.count()).where(
                *in_window, OnrampSession.status.in_(_WAITING), OnrampSession.created_at < abandoned_before
            )
        ).scalar_one()
        for status, count in by_status:
            if status == SessionStatus.fulfillment_complete.value:
                sessions["fulfilled"] += int(count)
            elif status == SessionStatus.rejected.value:
                sessions["rejected"] += int(count)
            else:
                sessions["pending"] += int(count)
        sessions["abandoned"] = int(abandoned)
        sessions["pending"] -= int(abandoned)
        # Summed here, as Decimals: SQLite keeps amounts as text, which SUM() would turn into floats.
        paid = db.execute(
            select(OnrampSession.source_currency, OnrampSession.source_amount).where(
                OnrampSession.created_at >= since,
                OnrampSession.status == SessionStatus.fulfillment_complete.value,
            )
        ).all()
        for currency, amount in paid:
            volume[currency.lower()] += amount
    return WindowReading(sessions=sessions, volume=dict(volume))


@dataclass
class PaymentsProbe:
    engine: Engine
    runner: DbRunner
    config: PaymentsConfig
    metrics: MonitorMetrics
    state: PaymentsState
    _currencies: dict[str, frozenset[str]] = field(default_factory=dict)

    def job(self) -> ProbeJob:
        return ProbeJob("payments", "database", self.config, self.probe)

    async def probe(self) -> None:
        now = datetime.now(UTC)
        try:
            readings = await self.runner.run(
                lambda: {
                    name: read_window(
                        self.engine, seconds=seconds, abandoned_after=self.config.abandoned_after_seconds, now=now
                    )
                    for name, seconds in self.config.windows.items()
                }
            )
        except SQLAlchemyError as exc:  # unreachable, or not the payment schema: the database probe says which
            raise ProbeFailed(f"database error ({type(exc).__name__})") from None
        m = self.metrics
        for window, reading in readings.items():
            for outcome, count in reading.sessions.items():
                m.onramp_sessions.labels(window, outcome).set(count)
            ratio = reading.success_ratio
            if ratio is None:
                remove_series(m.onramp_success_ratio, window)
            else:
                m.onramp_success_ratio.labels(window).set(ratio)
            currencies = self._currencies.get(window, frozenset()) | set(reading.volume)
            for currency in currencies:
                m.onramp_volume.labels(window, currency).set(float(reading.volume.get(currency, Decimal(0))))
            self._currencies[window] = frozenset(currencies)
        self.state.windows = readings
