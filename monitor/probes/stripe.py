"""Probing Stripe: the API answers an authenticated read, and what refunds and disputes appear.

Each run reads `GET /v1/balance` (cheap, authenticated, no side effect) with the official SDK, without SDK
retries (a probe must see the failure), timing it and classifying failures like the payment service does
(`timeout`, `connection`, `rate_limited`, `server_error`, `authentication`, `invalid_request`,
`invalid_response`). Then it lists `/v1/refunds` and `/v1/disputes` created since the last poll
(`created[gte]` the newest seen, paging with `starting_after`, objects already seen skipped by id): new ones
are counted (counters, from the monitor's start), and those within each window are counted again as gauges,
divided by the window's fulfilled sessions (from the payments probe) for the refund and dispute ratios.

Stripe is merchant of record for onramp purchases, so an onramp-only account may have no refunds or disputes:
the counts are then 0 and the ratios 0 over the fulfilled sessions (absent while there is none).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import stripe

from monitor.config import StripeConfig
from monitor.metrics import MonitorMetrics, remove_series
from monitor.probes.payments import PaymentsState
from monitor.scheduler import ProbeFailed, ProbeJob
from payment.core.metrics import LabelSets
from payment.onramp.stripe_gateway import StripeErrorType, stripe_error_type

__all__ = ["OPERATIONS", "StripeProbe", "metric_labels"]

PAGE_SIZE = 100
# Currencies Stripe counts in whole units (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
BALANCE, LIST_REFUNDS, LIST_DISPUTES = "balance", "list_refunds", "list_disputes"
OPERATIONS = (BALANCE, LIST_REFUNDS, LIST_DISPUTES)  # the `operation` label of the monitor's Stripe families
INVALID_RESPONSE = StripeErrorType.invalid_response.value


def metric_labels() -> LabelSets:
    """The Stripe probe's series, for `MonitorMetrics.initialise`: every error class of the payment service's
    classifier (`rejected` included: it is the classifier's to return, if unlikely for a read)."""
    return {
        "stripe_errors": [(operation, kind.value) for operation in OPERATIONS for kind in StripeErrorType],
        "stripe_duration": [(operation,) for operation in OPERATIONS],
    }


def major_units(amount: int, currency: str) -> Decimal:
    return Decimal(amount) if currency in ZERO_DECIMAL else Decimal(amount) / 100


@dataclass
class _Reversals:
    """Refunds or disputes seen within the longest window, by id, and where the next poll starts."""

    operation: str  # list_refunds | list_disputes
    path: str
    seen: dict[str, int] = field(default_factory=dict)  # id -> created
    cursor: int | None = None  # created[gte] of the next poll; None before the first

    def within(self, seconds: float, now: float) -> int:
        since = now - seconds
        return sum(1 for created in self.seen.values() if created >= since)


@dataclass
class StripeProbe:
    client: stripe.StripeClient
    config: StripeConfig
    metrics: MonitorMetrics
    payments: PaymentsState
    refunds: _Reversals = field(default_factory=lambda: _Reversals(LIST_REFUNDS, "/v1/refunds"))
    disputes: _Reversals = field(default_factory=lambda: _Reversals(LIST_DISPUTES, "/v1/disputes"))

    def __post_init__(self) -> None:
        m = self.metrics
        for operation in OPERATIONS:
            for kind in StripeErrorType:
                m.stripe_errors.labels(operation, kind.value)

    def job(self) -> ProbeJob:
        return ProbeJob("stripe", "stripe", self.config, self.probe)

    async def probe(self) -> None:
        m = self.metrics
        balance = await self._get(BALANCE, "/v1/balance")
        if balance.get("object") != "balance":
            m.stripe_errors.labels(BALANCE, INVALID_RESPONSE).inc()
            m.stripe_up.set(0)
            raise ProbeFailed(INVALID_RESPONSE)
        m.stripe_up.set(1)
        now = time.time()
        await self._poll(self.refunds, now, self._count_refund)
        await self._poll(self.disputes, now, self._count_dispute)
        longest = max(self.config.windows.values())
        for reversals in (self.refunds, self.disputes):
            reversals.seen = {key: created for key, created in reversals.seen.items() if created >= now - longest}
        for window, seconds in self.config.windows.items():
            refunds, disputes = self.refunds.within(seconds, now), self.disputes.within(seconds, now)
            m.stripe_window_refunds.labels(window).set(refunds)
            m.stripe_window_disputes.labels(window).set(disputes)
            fulfilled = self.payments.fulfilled(window)
            for gauge, count in ((m.stripe_refund_ratio, refunds), (m.stripe_dispute_ratio, disputes)):
                if fulfilled:
                    gauge.labels(window).set(count / fulfilled)
                else:
                    remove_series(gauge, window)

    async def _get(self, operation: str, path: str, **params: Any) -> dict[str, Any]:
        m = self.metrics
        started = time.perf_counter()
        try:
            response = await self.client.raw_request_async("get", path, **params)
        except stripe.StripeError as exc:
            kind = stripe_error_type(exc).value
            m.stripe_errors.labels(operation, kind).inc()
            if operation == BALANCE:
                m.stripe_up.set(0)
            raise ProbeFailed(kind) from None
        finally:
            m.stripe_duration.labels(operation).observe(time.perf_counter() - started)
        data = response.data
        if not isinstance(data, dict):
            m.stripe_errors.labels(operation, INVALID_RESPONSE).inc()
            if operation == BALANCE:
                m.stripe_up.set(0)
            raise ProbeFailed(INVALID_RESPONSE)
        return data

    async def _poll(self, reversals: _Reversals, now: float, count: Any) -> None:
        """Page through objects created since the cursor; count the new ones (not on the first poll, which
        only learns what already exists within the longest window)."""
        first = reversals.cursor is None
        since = int(now - max(self.config.windows.values())) if reversals.cursor is None else reversals.cursor
        params: dict[str, Any] = {"limit": PAGE_SIZE, "created": {"gte": since}}
        newest = since
        for _ in range(self.config.max_pages):
            page = await self._get(reversals.operation, reversals.path, **params)
            items = page.get("data")
            if not isinstance(items, list):
                self.metrics.stripe_errors.labels(reversals.operation, INVALID_RESPONSE).inc()
                raise ProbeFailed(INVALID_RESPONSE)
            for obj in items:
                key, created = obj.get("id"), obj.get("created")
                if not isinstance(key, str) or not isinstance(created, int) or key in reversals.seen:
                    continue
                reversals.seen[key] = created
                newest = max(newest, created)
                if not first:
                    count(obj)
            if not page.get("has_more") or not items:
                break
            params["starting_after"] = items[-1]["id"]
        reversals.cursor = newest

    def _count_refund(self, refund: dict[str, Any]) -> None:
        m = self.metrics
        m.stripe_refunds.labels(str(refund.get("status") or "unknown")).inc()
        currency = str(refund.get("currency") or "unknown").lower()
        m.stripe_refunded_amount.labels(currency).inc(float(major_units(int(refund.get("amount") or 0), currency)))

    def _count_dispute(self, dispute: dict[str, Any]) -> None:
        m = self.metrics
        m.stripe_disputes.labels(str(dispute.get("reason") or "unknown")).inc()
        currency = str(dispute.get("currency") or "unknown").lower()
        m.stripe_disputed_amount.labels(currency).inc(float(major_units(int(dispute.get("amount") or 0), currency)))
