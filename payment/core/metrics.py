"""Every Prometheus metric of the payment API, in one place (the contract is docs/metrics.md).

Names follow Prometheus conventions: `musdpay_<subsystem>_<name>_<unit>`, base units, `_total` counters. Labels
are low-cardinality by construction: route templates, statuses, outcomes and error classes; never a wallet
address, a session or event id, or a raw path.

Each application builds its own `PaymentMetrics` on its own `CollectorRegistry`, so tests never share state.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

__all__ = [
    "KNOWN_EVENT_TYPES",
    "OTHER_EVENT_TYPE",
    "SLIPPAGE_DIRECTIONS",
    "LabelSets",
    "PaymentMetrics",
    "PoolCollector",
    "event_type_label",
    "initialise_families",
    "slippage_direction",
]

NAMESPACE = "musdpay"

# Request latency buckets (seconds): dense where the API answers (1-100 ms), sparse above.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Minutes to hours: how long a buyer takes to pay and Stripe to deliver.
FULFILLMENT_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400)
LAG_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
# Slippage as a magnitude with its direction (a histogram with negative buckets has no _sum in prometheus_client's
# OpenMetrics output, which OpenMetrics parsers then refuse): a share of the quote, and MUSD on chain.
SLIPPAGE_RATIO_BUCKETS = (0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1)
SLIPPAGE_AMOUNT_BUCKETS = (0, 0.001, 0.01, 0.1, 1, 10)
# The buyer got less than the reference amount, more, or exactly it.
SLIPPAGE_DIRECTIONS = ("short", "over", "none")


def slippage_direction(value: Decimal) -> str:
    return "short" if value > 0 else "over" if value < 0 else "none"


# Event types we label by name; anything else Stripe sends is counted as "other".
KNOWN_EVENT_TYPES = frozenset({"crypto.onramp_session_updated"})
OTHER_EVENT_TYPE = "other"


def event_type_label(event_type: str) -> str:
    return event_type if event_type in KNOWN_EVENT_TYPES else OTHER_EVENT_TYPE


Labels = tuple[str, ...]
# The series of some families known before their first event: label tuples by the attribute naming the family.
LabelSets = Mapping[str, Collection[Labels]]


def initialise_families(metrics: object, label_sets: Iterable[LabelSets]) -> None:
    """Create each listed series of `metrics` (counters and histograms) at 0.

    `increase()` and `rate()` see the first event after a restart only if an earlier sample exists, so every
    series whose labels are known in advance must exist from the first scrape. The sets come from the code that
    emits the values (each domain's enums and constants, through its `metric_labels`) and from the settings;
    only closed sets belong here (HTTP status codes, for instance, are not known in advance). `labels()` alone
    creates the child; in multiprocess mode its 0 is written to this process's file then, so the sum over the
    workers shows it too.
    """
    for label_set in label_sets:
        for name, series in label_set.items():
            family = getattr(metrics, name)  # a wrong name fails at start-up (and in tests)
            if not isinstance(family, Counter | Histogram):
                raise TypeError(f"{name} is not a counter or histogram: a gauge at 0 would claim a value")
            for labels in series:
                family.labels(*labels)


class PaymentMetrics:
    """The metric families of one application instance; `initialise` creates the series known in advance."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_collectors: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        if process_collectors:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        # RED of the HTTP API.
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status code.",
            ["method", "route", "status_code"],
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests_in_flight = Gauge(
            "http_requests_in_flight",
            "HTTP requests being answered right now.",
            namespace=NAMESPACE,
            registry=r,
            multiprocess_mode="livesum",
        )

        # Onramp sessions.
        self.sessions_created = Counter(
            "onramp_sessions_created_total",
            "Onramp sessions created at Stripe and stored.",
            ["source_currency", "destination_currency", "destination_network"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.session_create_failures = Counter(
            "onramp_session_create_failures_total",
            "Session creations that failed, by problem type (stripe-rejected, stripe-unavailable, ...).",
            ["reason"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.status_transitions = Counter(
            "onramp_status_transitions_total",
            "Session status changes applied, by previous and new status and what caused them.",
            ["from_status", "to_status", "source"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.payment_volume = Counter(
            "onramp_payment_volume_total",
            "Fiat amount of sessions that reached a final status, in major units of the currency.",
            ["currency", "status"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.fees = Counter(
            "onramp_fees_total",
            "Stripe's fees on fulfilled sessions, in major units of the source currency, by fee: transaction, network.",
            ["currency", "fee"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.fulfillment_duration = Histogram(
            "onramp_fulfillment_duration_seconds",
            "Time from session creation to fulfillment_complete.",
            namespace=NAMESPACE,
            buckets=FULFILLMENT_BUCKETS,
            registry=r,
        )
        self.quote_slippage = Histogram(
            "onramp_quote_slippage_ratio",
            "|quoted - Stripe's destination_amount| / quoted, per session fulfilled with a quote passed at creation, "
            "by direction (short: the buyer got less than quoted, over: more, none).",
            ["direction"],
            namespace=NAMESPACE,
            buckets=SLIPPAGE_RATIO_BUCKETS,
            registry=r,
        )

        # Stripe webhooks.
        self.webhook_events = Counter(
            "webhook_events_total",
            "Stripe webhook deliveries, by event type and outcome "
            "(processed, duplicate, out_of_order, unknown_session, ignored, invalid_signature, invalid_payload, "
            "failed).",
            ["type", "outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.webhook_lag = Histogram(
            "webhook_lag_seconds",
            "Time from Stripe creating an event to this service processing it.",
            namespace=NAMESPACE,
            buckets=LAG_BUCKETS,
            registry=r,
        )

        # Calls to Stripe.
        self.stripe_request_duration = Histogram(
            "stripe_request_duration_seconds",
            "Duration of calls to the Stripe API (SDK retries included), by operation.",
            ["operation"],
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stripe_errors = Counter(
            "stripe_errors_total",
            "Failed calls to the Stripe API, by operation and error class "
            "(timeout, connection, rate_limited, server_error, authentication, rejected, onramp_unavailable, "
            "invalid_request, invalid_response).",
            ["operation", "error_type"],
            namespace=NAMESPACE,
            registry=r,
        )

        # MUSD delivery on Mezo (recorded by the delivery component).
        self.deliveries = Counter(
            "delivery_total",
            "MUSD deliveries that reached an outcome, by delivery mode and outcome.",
            ["mode", "outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.delivery_duration = Histogram(
            "delivery_duration_seconds",
            "Time from payment completion to the MUSD delivery being verified on chain, by mode.",
            ["mode"],
            namespace=NAMESPACE,
            buckets=FULFILLMENT_BUCKETS,
            registry=r,
        )
        self.delivery_slippage = Histogram(
            "delivery_slippage_amount",
            "|Stripe's destination_amount - the MUSD verified on chain|, per verified delivery (major units), by "
            "direction (short: less arrived, over: more, none).",
            ["direction"],
            namespace=NAMESPACE,
            buckets=SLIPPAGE_AMOUNT_BUCKETS,
            registry=r,
        )

        # After a database restore: treasury sends wait while deliveries are rebuilt from the chain (recovery.py).
        self.delivery_recovery_in_progress = Gauge(
            "delivery_recovery_in_progress",
            "1 while the delivery worker refuses treasury sends until it has rebuilt deliveries from the chain "
            "after a restore, else 0.",
            namespace=NAMESPACE,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.delivery_recovered = Counter(
            "delivery_recovered",
            "Deliveries rebuilt from treasury transfers found on chain after a restore (each one not paid again).",
            namespace=NAMESPACE,
            registry=r,
        )
        self.delivery_recovery_discrepancies = Counter(
            "delivery_recovery_discrepancies",
            "Treasury transfers a recovery scan could not tie to a delivery, by kind (no_reference, "
            "unknown_session, mismatch, paid_twice).",
            ["kind"],
            namespace=NAMESPACE,
            registry=r,
        )

        # Database pool saturation; the gauges are read from the pool at scrape time (PoolCollector).
        self.db_pool_wait = Histogram(
            "db_pool_wait_seconds",
            "Time a request waited for a database connection from the pool.",
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        # Mezo JSON-RPC provider pool (payment/chain/pool.py); `provider` is a configured name, never a URL.
        self.rpc_request_duration = Histogram(
            "rpc_request_duration_seconds",
            "Duration of each JSON-RPC call to one provider (every attempt and health poll), by provider, method "
            "(known eth_* names, else other) and outcome (success, rpc_error, failure).",
            ["provider", "method", "outcome"],
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rpc_errors = Counter(
            "rpc_errors_total",
            "Failed JSON-RPC calls, by provider and error kind (timeout, connect, http_429, http_5xx, http_other, "
            "jsonrpc_error, invalid_response, chain_id_mismatch, no_provider).",
            ["provider", "kind"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.rpc_failovers = Counter(
            "rpc_failovers_total",
            "Calls that moved from one provider to the next after a retryable error.",
            ["from_provider", "to_provider"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.rpc_provider_state = Gauge(
            "rpc_provider_state",
            "1 for the current health state of each provider (unknown, healthy, unreachable, out_of_sync, "
            "wrong_chain), 0 for the others.",
            ["provider", "state"],
            namespace=NAMESPACE,
            registry=r,
            multiprocess_mode="liveall",
        )
        self.rpc_provider_selected = Gauge(
            "rpc_provider_selected",
            "1 for the provider calls go to first, 0 for the others.",
            ["provider"],
            namespace=NAMESPACE,
            registry=r,
            multiprocess_mode="liveall",
        )
        self.rpc_provider_head_lag = Gauge(
            "rpc_provider_head_lag_blocks",
            "Blocks the provider's head was behind the best provider's at the last health poll.",
            ["provider"],
            namespace=NAMESPACE,
            registry=r,
            multiprocess_mode="livemax",
        )

        # Edge security (payment/security): requests refused by rate limits, and the shared limiter's health.
        self.rate_limited = Counter(
            "rate_limited_total",
            "Requests refused with 429 by a rate limit, by rule (default, create_session, auth, auth_failure, "
            "webhook, ...).",
            ["rule"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.rate_limit_backend_errors = Counter(
            "rate_limit_backend_errors_total",
            "Rate limit checks that could not reach Redis and were answered by the in-process limiter instead.",
            namespace=NAMESPACE,
            registry=r,
        )

        # Stripe reconciliation (payment/reconcile).
        self.reconcile_runs = Counter(
            "reconcile_runs_total",
            "Reconciliation passes, by outcome (success, truncated, skipped, stripe_error, rate_limited, "
            "database_error, failed).",
            ["outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconcile_last_success = Gauge(
            "reconcile_last_success_timestamp_seconds",
            "Unix time of the last reconciliation pass that finished, by any instance (0: none yet).",
            namespace=NAMESPACE,
            registry=r,
            multiprocess_mode="max",
        )
        self.reconcile_interval = Gauge(
            "reconcile_interval_seconds",
            "The configured reconciliation interval (0: reconciliation is off).",
            namespace=NAMESPACE,
            registry=r,
            multiprocess_mode="max",
        )
        self.reconcile_sessions_checked = Counter(
            "reconcile_sessions_checked_total",
            "Sessions reconciliation retrieved from Stripe.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconcile_sessions_corrected = Counter(
            "reconcile_sessions_corrected_total",
            "Sessions whose status reconciliation changed to Stripe's (a webhook was lost or late).",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconcile_events_recovered = Counter(
            "reconcile_events_recovered_total",
            "Events whose delivery failed at Stripe that reconciliation listed and recorded (not seen before).",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "reconcile_duration_seconds",
            "Duration of reconciliation passes (skipped ones excluded).",
            namespace=NAMESPACE,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )

        # Three-ledger conservation (payment/ledgers): open disagreements between Stripe, our database and the
        # chain, set from the ledger_discrepancies table after each check.
        self.ledger_discrepancies = Gauge(
            "ledger_discrepancies",
            "Open ledger discrepancies (Stripe, database and chain disagree), by kind.",
            ["kind"],
            namespace=NAMESPACE,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ledger_discrepancy_amount = Gauge(
            "ledger_discrepancy_amount",
            "Amount at stake in open ledger discrepancies, in major units, by kind and currency (musd, usd, ...).",
            ["kind", "currency"],
            namespace=NAMESPACE,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ledger_checks = Counter(
            "ledger_checks_total",
            "Ledger checks by outcome (success, failed).",
            ["outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.ledger_last_check = Gauge(
            "ledger_last_check_timestamp_seconds",
            "Unix time of the last completed ledger check.",
            namespace=NAMESPACE,
            registry=r,
            multiprocess_mode="livemax",
        )

    def initialise(self, *label_sets: LabelSets) -> None:
        """Create every series known in advance at 0 (once, when the application is built)."""
        slippage = {"quote_slippage": [(d,) for d in SLIPPAGE_DIRECTIONS]}
        slippage["delivery_slippage"] = slippage["quote_slippage"]
        initialise_families(self, [*label_sets, slippage])

    def observe_delivery_slippage(self, destination_amount: Decimal | None, delivered_amount: Decimal | None) -> None:
        """A verified delivery: Stripe's destination_amount less what arrived on chain (nothing if one is unknown)."""
        if destination_amount is not None and delivered_amount is not None:
            self.observe_slippage(self.delivery_slippage, destination_amount - delivered_amount)

    @staticmethod
    def observe_slippage(histogram: Histogram, value: Decimal) -> None:
        histogram.labels(slippage_direction(value)).observe(float(abs(value)))

    def watch_pool(self, engine: Engine) -> None:
        """Expose the engine's pool occupancy and time its checkouts."""
        self.registry.register(PoolCollector(engine))
        pool = engine.pool
        if isinstance(pool, InstrumentedQueuePool):
            pool.wait_histogram = self.db_pool_wait


class InstrumentedQueuePool(QueuePool):
    """A QueuePool that reports how long each checkout waited (SQLAlchemy has no event before a checkout)."""

    wait_histogram: Histogram | None = None

    def _do_get(self) -> Any:
        started = time.perf_counter()
        try:
            return super()._do_get()
        finally:
            if self.wait_histogram is not None:
                self.wait_histogram.observe(time.perf_counter() - started)

    def recreate(self) -> InstrumentedQueuePool:
        pool: InstrumentedQueuePool = super().recreate()  # type: ignore[assignment]
        pool.wait_histogram = self.wait_histogram
        return pool


class PoolCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        pool = self._engine.pool
        in_use = GaugeMetricFamily(
            f"{NAMESPACE}_db_pool_connections_in_use", "Database connections checked out of the pool."
        )
        size = GaugeMetricFamily(
            f"{NAMESPACE}_db_pool_size", "Connections the pool keeps open at most, overflow aside."
        )
        overflow = GaugeMetricFamily(
            f"{NAMESPACE}_db_pool_overflow_connections", "Connections opened beyond the pool size right now."
        )
        if isinstance(pool, QueuePool):
            in_use.add_metric([], pool.checkedout())
            size.add_metric([], pool.size())
            overflow.add_metric([], max(pool.overflow(), 0))
        yield in_use
        yield size
        yield overflow


# JSON-RPC methods labelled by name in the rpc_* families; any other method is counted as "other".
KNOWN_RPC_METHODS = frozenset(
    {
        "eth_blockNumber",
        "eth_call",
        "eth_chainId",
        "eth_estimateGas",
        "eth_feeHistory",
        "eth_gasPrice",
        "eth_getBalance",
        "eth_getBlockByNumber",
        "eth_getCode",
        "eth_getLogs",
        "eth_getTransactionByHash",
        "eth_getTransactionCount",
        "eth_getTransactionReceipt",
        "eth_maxPriorityFeePerGas",
        "eth_sendRawTransaction",
        "eth_syncing",
        "net_version",
    }
)


def rpc_method_label(method: str) -> str:
    return method if method in KNOWN_RPC_METHODS else "other"
