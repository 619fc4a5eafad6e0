"""Every metric of the monitor, on its own registry (the contract is the "Monitor" section of docs/metrics.md).

Names are `musdpay_monitor_<subsystem>_<name>_<unit>`: what the monitor measures from outside is scraped from
another job than the API's own `musdpay_rpc_*`/`musdpay_db_*` families and means something else (a probe's
view, not the service's calls), so the families are distinct. Labels are closed sets or configured names:
`probe` (the kind of probe), `target` (a provider name, `primary`/`replica`, `stripe`, ...), `provider` (a
configured RPC provider name, never a URL), `window` (a configured window name such as `1h`).
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from payment.core.metrics import LATENCY_BUCKETS, LabelSets, initialise_families

__all__ = ["MonitorMetrics", "remove_series"]

NAMESPACE = "musdpay"
SUBSYSTEM = "monitor"
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class MonitorMetrics:
    """The metric families of one monitor process; `initialise` creates the series known in advance."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_collectors: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        if process_collectors:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, subsystem=SUBSYSTEM, registry=r)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, namespace=NAMESPACE, subsystem=SUBSYSTEM, registry=r)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, namespace=NAMESPACE, subsystem=SUBSYSTEM, buckets=buckets, registry=r)

        pt = ("probe", "target")

        # --- the monitor itself: every probe of every target -----------------------------------------------
        self.probe_duration = histogram(
            "probe_duration_seconds", "Duration of each probe run, by probe and target.", pt, LATENCY_BUCKETS
        )
        self.probe_runs = counter(
            "probe_runs_total",
            "Probe runs by probe, target and outcome (success, failure, timeout).",
            (*pt, "outcome"),
        )
        self.probe_success = gauge("probe_success", "1 if the last run of the probe succeeded, else 0.", pt)
        self.probe_last_success = gauge(
            "probe_last_success_timestamp_seconds", "Unix time of the probe's last successful run.", pt
        )
        self.probe_interval = gauge("probe_interval_seconds", "Configured interval between runs of the probe.", pt)
        self.probe_lag = histogram(
            "probe_scheduling_lag_seconds",
            "Delay between a run's scheduled time (jitter included) and its start.",
            pt,
            LAG_BUCKETS,
        )
        self.probe_skipped = counter(
            "probe_skipped_total",
            "Runs not started: missed (later than the misfire grace) or overlap (the previous run still going).",
            (*pt, "reason"),
        )

        # --- Mezo JSON-RPC providers ------------------------------------------------------------------------
        p = ("provider",)
        self.rpc_probes = counter(
            "rpc_probes_total",
            "RPC probes by provider and outcome (success: the right chain answered its head; failure otherwise).",
            (*p, "outcome"),
        )
        self.rpc_up = gauge("rpc_up", "1 if the provider's last probe succeeded, else 0.", p)
        self.rpc_sla_target = gauge(
            "rpc_sla_target_ratio", "Configured availability target of the provider (e.g. 0.999).", p
        )
        self.rpc_latency = histogram(
            "rpc_latency_seconds", "Duration of the eth_blockNumber probe call, by provider.", p, LATENCY_BUCKETS
        )
        self.rpc_last_latency = gauge(
            "rpc_last_latency_seconds", "Duration of the provider's last successful eth_blockNumber call.", p
        )
        self.rpc_errors = counter(
            "rpc_errors_total",
            "Failed probe calls by provider and kind (timeout, connect, http_429, http_5xx, http_other, "
            "jsonrpc_error, invalid_response, chain_id_mismatch).",
            (*p, "kind"),
        )
        self.rpc_requests = counter(
            "rpc_requests_total", "JSON-RPC requests the monitor sent, by provider and method.", (*p, "method")
        )
        self.rpc_chain_id = gauge("rpc_chain_id", "Chain id the provider answered at its last eth_chainId.", p)
        self.rpc_chain_id_match = gauge(
            "rpc_chain_id_match", "1 if the provider's last eth_chainId was the configured chain, else 0.", p
        )
        self.rpc_head = gauge("rpc_head_block", "The provider's head block number at its last probe.", p)
        self.rpc_head_lag_blocks = gauge(
            "rpc_head_lag_blocks", "Blocks the provider's head is behind the best provider's, at its last probe.", p
        )
        self.rpc_head_lag_seconds = gauge(
            "rpc_head_lag_seconds",
            "How long before the provider's last probe another provider had already reported a higher head.",
            p,
        )
        self.rpc_head_age = gauge(
            "rpc_head_age_seconds", "Time since the provider's head was last seen to move (at scrape time).", p
        )
        self.rpc_stalled = gauge(
            "rpc_head_stalled",
            "1 if the provider's head has not moved for the stall threshold while another provider is ahead.",
            p,
        )
        self.rpc_best_head_age = gauge(
            "rpc_best_head_age_seconds", "Time since the best head among all providers last moved (chain halt)."
        )
        self.rpc_credits = counter(
            "rpc_credits_used_total", "Provider credits the monitor's requests cost, from the credit table.", p
        )
        self.rpc_credit_cost = gauge(
            "rpc_credit_cost", "Credits one request costs on the provider's plan, by method.", (*p, "method")
        )
        self.rpc_credit_quota = gauge("rpc_month_credit_quota", "Credits the provider's plan allows per month.", p)
        self.rpc_credits_projected = gauge(
            "rpc_month_credits_projected",
            "The monitor's credit use this calendar month, projected to the month's end at the rate seen so far.",
            p,
        )

        # --- Stripe -------------------------------------------------------------------------------------------
        self.stripe_up = gauge("stripe_up", "1 if the last authenticated read of the Stripe API succeeded, else 0.")
        self.stripe_duration = histogram(
            "stripe_request_duration_seconds",
            "Duration of the monitor's Stripe API reads, by operation.",
            ("operation",),
            LATENCY_BUCKETS,
        )
        self.stripe_errors = counter(
            "stripe_errors_total",
            "Failed Stripe reads by operation and error type (timeout, connection, rate_limited, server_error, "
            "authentication, invalid_request, invalid_response).",
            ("operation", "error_type"),
        )
        self.stripe_refunds = counter(
            "stripe_refunds_total", "Refunds seen created in Stripe, by status at sight.", ("status",)
        )
        self.stripe_refunded_amount = counter(
            "stripe_refunded_amount_total", "Amount of the refunds seen, in major units of the currency.", ("currency",)
        )
        self.stripe_disputes = counter(
            "stripe_disputes_total", "Disputes seen created in Stripe, by reason.", ("reason",)
        )
        self.stripe_disputed_amount = counter(
            "stripe_disputed_amount_total",
            "Amount of the disputes seen, in major units of the currency.",
            ("currency",),
        )
        self.stripe_window_refunds = gauge("stripe_window_refunds", "Refunds created within the window.", ("window",))
        self.stripe_window_disputes = gauge(
            "stripe_window_disputes", "Disputes created within the window.", ("window",)
        )
        self.stripe_refund_ratio = gauge(
            "stripe_refund_ratio",
            "Refunds per fulfilled onramp session within the window (absent while there is none).",
            ("window",),
        )
        self.stripe_dispute_ratio = gauge(
            "stripe_dispute_ratio",
            "Disputes per fulfilled onramp session within the window (absent while there is none).",
            ("window",),
        )

        # --- onramp payments (from the database) ---------------------------------------------------------------
        self.onramp_sessions = gauge(
            "onramp_sessions",
            "Sessions created within the window, by outcome (fulfilled, rejected, abandoned, pending).",
            ("window", "outcome"),
        )
        self.onramp_success_ratio = gauge(
            "onramp_success_ratio",
            "Fulfilled among the window's sessions that ended (fulfilled, rejected or abandoned); absent if none.",
            ("window",),
        )
        self.onramp_volume = gauge(
            "onramp_payment_volume",
            "Fiat amount of the window's fulfilled sessions, in major units of the currency.",
            ("window", "currency"),
        )

        # --- the database ---------------------------------------------------------------------------------------
        d = ("database",)
        self.db_up = gauge("db_up", "1 if the last connect and SELECT 1 succeeded, else 0.", d)
        self.db_connect_duration = histogram(
            "db_connect_duration_seconds", "Time to open a new database connection.", d, LATENCY_BUCKETS
        )
        self.db_query_duration = histogram(
            "db_query_duration_seconds", "Duration of SELECT 1 on a fresh connection.", d, LATENCY_BUCKETS
        )
        self.db_errors = counter(
            "db_errors_total", "Failed database probes, by kind (connect, timeout, query).", (*d, "kind")
        )
        self.db_connections = gauge(
            "db_connections", "Server connections by state (PostgreSQL: pg_stat_activity).", (*d, "state")
        )
        self.db_max_connections = gauge("db_max_connections", "The server's max_connections (PostgreSQL).", d)
        self.db_connections_ratio = gauge(
            "db_connections_used_ratio", "Server connections in use over max_connections (pool saturation).", d
        )
        self.db_size = gauge("db_size_bytes", "Size of the database on disk.", d)
        self.db_oldest_transaction = gauge(
            "db_oldest_transaction_seconds", "Age of the oldest open transaction (PostgreSQL; 0 when none).", d
        )
        self.db_replication_lag = gauge(
            "db_replication_lag_seconds", "Replay lag of the replica (0 when it has replayed everything received).", d
        )
        self.db_migrations_at_head = gauge(
            "db_migrations_at_head", "1 if the schema is at the newest migration, else 0.", d
        )

        # --- WAL archiving and the recovery window (point-in-time recovery; monitor/probes/archiver.py) ----------
        self.wal_archiving_enabled = gauge(
            "wal_archiving_enabled", "1 if the server has archive_mode on and an archive_command, else 0.", d
        )
        self.wal_archived_segments = gauge(
            "wal_archived_segments", "WAL files archived since the statistics reset (pg_stat_archiver).", d
        )
        self.wal_archive_failures = gauge(
            "wal_archive_failures", "Failed archive_command runs since the statistics reset (pg_stat_archiver).", d
        )
        self.wal_last_archived = gauge(
            "wal_last_archived_timestamp_seconds", "Unix time the server last archived a WAL file.", d
        )
        self.wal_last_failed = gauge(
            "wal_last_failed_timestamp_seconds", "Unix time archive_command last failed (0: never).", d
        )
        self.wal_written = gauge("wal_written_bytes", "Position of the server's WAL insert pointer, in bytes.", d)
        self.wal_last_write = gauge(
            "wal_last_write_timestamp_seconds",
            "Unix time the monitor last saw WAL written (the insert pointer moved between two probes).",
            d,
        )
        self.recovery_oldest = gauge(
            "recovery_window_oldest_timestamp_seconds",
            "Oldest point the archive can restore to: the end of its oldest complete base backup.",
            d,
        )
        self.recovery_newest = gauge(
            "recovery_window_newest_timestamp_seconds",
            "Newest point the archive can restore to: when its newest WAL segment was archived.",
            d,
        )
        self.recovery_base_backups = gauge(
            "recovery_base_backups", "Complete base backups in the archive destination.", d
        )

        # --- the payment pipeline ---------------------------------------------------------------------------------
        self.stuck_sessions = gauge(
            "pipeline_stuck_sessions", "Sessions in fulfillment_processing for longer than the threshold."
        )
        self.stuck_oldest = gauge(
            "pipeline_stuck_oldest_age_seconds", "Time the oldest stuck session has been in fulfillment_processing."
        )
        self.undelivered_sessions = gauge(
            "pipeline_undelivered_sessions",
            "Paid sessions whose MUSD delivery is not verified past the deadline, by delivery status "
            "(pending, held, not_found, mismatch, failed, missing).",
            ("status",),
        )
        self.undelivered_oldest = gauge(
            "pipeline_undelivered_oldest_age_seconds", "Time since the oldest undelivered paid session became due."
        )
        self.undelivered_amount = gauge(
            "pipeline_undelivered_amount",
            "Amount at risk in undelivered paid sessions: fiat paid (usd, ...) and MUSD owed (musd), in major units.",
            ("currency",),
        )
        self.deliveries = gauge("pipeline_deliveries", "Deliveries by status (all time).", ("status",))
        self.open_sessions = gauge(
            "pipeline_open_sessions", "Sessions not yet final, touched within the open-session horizon."
        )
        self.webhook_last = gauge(
            "pipeline_last_webhook_timestamp_seconds", "Unix time the last Stripe webhook was processed (0: never)."
        )
        self.webhook_silence = gauge(
            "pipeline_webhook_silence_seconds",
            "Time without a processed webhook while sessions are open (0 when none is open).",
        )
        self.treasury_balance = gauge(
            "treasury_balance", "Treasury balance in major units, by asset (musd, btc).", ("asset",)
        )
        self.treasury_minimum = gauge(
            "treasury_minimum_balance", "Balance the treasury keeps (payment settings), by asset.", ("asset",)
        )

        # --- the writing job (re-verification) ---------------------------------------------------------------------
        self.reverify_runs = counter(
            "reverify_runs_total",
            "Re-verification rounds by outcome (acted, lock_held: another monitor acted).",
            ("outcome",),
        )
        self.reverified = counter("reverified_deliveries_total", "Deliveries sent back to the chain check.")

        # --- backups (monitor/probes/backup.py; docs/backups.md) ------------------------------------------------
        # `musdpay_backup_*`, not `musdpay_monitor_*`: they describe the backups themselves (read back from the
        # destination), which DatabaseBackupStale reads by these names whichever process made them.
        def backup_gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, ("database",), namespace=NAMESPACE, subsystem="backup", registry=r)

        def backup_counter(name: str, doc: str, labels: tuple[str, ...] = ("database",)) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, subsystem="backup", registry=r)

        self.backup_last_success = backup_gauge(
            "last_success_timestamp_seconds", "Unix time the newest complete backup in the destination was made."
        )
        self.backup_size = backup_gauge("size_bytes", "Size of the newest backup (compressed and encrypted).")
        self.backup_duration = backup_gauge("duration_seconds", "How long the newest backup took to make.")
        self.backup_count = backup_gauge("stored_backups", "Complete backups in the destination.")
        self.backup_failures = backup_counter("failures", "Backups the monitor tried to make and could not.")
        self.backup_runs = backup_counter(
            "runs",
            "Backup rounds by outcome (created, not_due, lock_held: another monitor's turn).",
            ("database", "outcome"),
        )
        self.backup_pruned = backup_counter("pruned", "Backups deleted by the retention policy after a backup.")
        self.backup_verify_last_success = backup_gauge(
            "last_verify_success_timestamp_seconds", "Unix time a backup last passed verification (restored aside)."
        )
        self.backup_verify_failures = backup_counter(
            "verify_failures", "Verifications (restore into a scratch database and checks) that failed."
        )

    def initialise(self, *label_sets: LabelSets) -> None:
        """Create every series known in advance at 0 (once the probes are built: `Monitor` does it), so that
        `increase()` and `rate()` see the first event after a restart. Each probe module's `metric_labels` gives
        its sets, from the constants it emits."""
        initialise_families(self, label_sets)


def remove_series(gauge: Gauge, *labels: str) -> None:
    """Drop one labelled series (a ratio with nothing to divide by is absent, not 0 or NaN)."""
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
