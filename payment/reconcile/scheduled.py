"""Reconciliation inside the API: a pass every `MUSDPAY_RECONCILE_INTERVAL_SECONDS`, by one instance at a time,
followed by the ledger check (payment/ledgers) when one is given.

The instances share the lease "reconcile" (the `worker_leases` table): the holder renews it at each pass, and
another takes over once it has not been renewed for two intervals. A failed pass is retried sooner than the
interval, doubling from `MUSDPAY_RECONCILE_RETRY_INITIAL_SECONDS` (and never before Stripe's Retry-After); no
error ends the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from payment.core.config import Settings
from payment.core.telemetry import Telemetry
from payment.delivery.store import acquire_lease, release_lease
from payment.reconcile.service import PassReport, RunOutcome, load_state, run_pass
from payment.reconcile.stripe import ReconcileStripe, StripeUnavailable

__all__ = ["LEASE_NAME", "Reconciler"]

log = logging.getLogger(__name__)

LEASE_NAME = "reconcile"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(
        self,
        *,
        settings: Settings,
        factory: sessionmaker[Session],
        stripe: ReconcileStripe,
        telemetry: Telemetry,
        clock: Callable[[], datetime] = _utcnow,
        ledgers: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.settings = settings
        self.ledgers = ledgers  # the ledger check (payment/ledgers), after each pass this instance ran
        self.factory = factory
        self.stripe = stripe
        self.telemetry = telemetry
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._failures = 0

    @property
    def interval(self) -> float:
        return self.settings.reconcile_interval_seconds

    def run_once(self) -> PassReport:
        """Take (or renew) the lease and run a pass; never raises for Stripe or the database."""
        metrics = self.telemetry.metrics
        try:
            report = self._leased_pass()
        except StripeUnavailable as exc:
            report = PassReport(
                outcome=RunOutcome.rate_limited if exc.rate_limited else RunOutcome.stripe_error,
                retry_after=exc.retry_after,
                detail=exc.error_type.value,
            )
            log.warning("reconcile pass stopped: Stripe %s", exc.error_type.value)
        except OperationalError as exc:
            report = PassReport(outcome=RunOutcome.database_error, detail=type(exc.orig).__name__)
            log.warning("reconcile pass skipped, database unavailable: %s", report.detail)
        except Exception:
            report = PassReport(outcome=RunOutcome.failed)
            log.exception("reconcile pass failed")
        metrics.reconcile_runs.labels(report.outcome.value).inc()
        return report

    def _leased_pass(self) -> PassReport:
        ttl = timedelta(seconds=2 * self.interval)
        if not acquire_lease(self.factory, name=LEASE_NAME, holder=self.holder, ttl=ttl, now=self.clock()):
            # Another instance reconciles: show its last success, so any instance's gauge tells the truth.
            state = load_state(self.factory)
            if state is not None and state.last_success_at is not None:
                self.telemetry.metrics.reconcile_last_success.set(state.last_success_at.timestamp())
            return PassReport(outcome=RunOutcome.skipped)
        report = run_pass(factory=self.factory, stripe=self.stripe, settings=self.settings, telemetry=self.telemetry)
        if report.sessions_corrected or report.events_recovered:
            log.info(
                "reconcile pass: %d sessions checked, %d corrected, %d events recovered",
                report.sessions_checked,
                report.sessions_corrected,
                report.events_recovered,
            )
        return report

    def next_delay(self, report: PassReport) -> float:
        if report.outcome in (RunOutcome.success, RunOutcome.truncated, RunOutcome.skipped):
            self._failures = 0
            return self.interval
        self._failures += 1
        backoff = min(self.interval, self.settings.reconcile_retry_initial_seconds * 2 ** (self._failures - 1))
        return float(max(backoff, report.retry_after or 0.0))

    async def _check_ledgers(self) -> None:
        assert self.ledgers is not None
        try:
            await self.ledgers()
            self.telemetry.metrics.ledger_checks.labels("success").inc()
        except Exception:  # Stripe, the chain or the database failed: the next pass checks again
            self.telemetry.metrics.ledger_checks.labels("failed").inc()
            log.warning("ledger check failed", exc_info=True)

    async def run(self) -> None:
        try:
            while True:
                report = await asyncio.to_thread(self.run_once)
                if self.ledgers is not None and report.outcome in (RunOutcome.success, RunOutcome.truncated):
                    await self._check_ledgers()
                await asyncio.sleep(self.next_delay(report))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(release_lease, self.factory, name=LEASE_NAME, holder=self.holder)
