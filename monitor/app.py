"""The monitor: every probe the configuration enables, on one schedule, exporting to one registry.

    monitor = Monitor(load_config(Path("monitor.yml")))
    await monitor.start()        # builds the clients, schedules the jobs
    ...                          # monitor.metrics.registry fills up
    await monitor.aclose()

`run(config)` is `musdpay monitor`: the same, plus `/metrics` on `server.port` (default 9101), a JSON start line
on stdout (`{"metricsUrl": ..., "jobs": [...]}`), and a clean stop on SIGTERM or SIGINT.

Which probes run: RPC (one job per provider of the payment settings), database (primary, and the replica when
`database.replica_url` is set), payments and pipeline (from the database), Stripe (when a secret key is
configured), treasury (when an address is configured or derivable from the treasury key), re-verification
and WAL archiving with the recovery window (`archiver`, when enabled with its archive destination), and
scheduled backups with their verification (`backup`, when enabled with its `dest`). Each kind
can be switched off with `enabled: false`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from typing import Any

import stripe
from eth_account import Account
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from monitor.config import MonitorConfig
from monitor.db import DbRunner, read_engine
from monitor.metrics import MonitorMetrics
from monitor.probes.archiver import ArchiverProbe
from monitor.probes.backup import BackupJob
from monitor.probes.backup import metric_labels as backup_labels
from monitor.probes.database import DatabaseProbe
from monitor.probes.database import metric_labels as database_labels
from monitor.probes.payments import PaymentsProbe, PaymentsState
from monitor.probes.pipeline import PipelineProbe
from monitor.probes.reverify import ReverifyJob
from monitor.probes.reverify import metric_labels as reverify_labels
from monitor.probes.rpc import RpcProbes
from monitor.probes.rpc import metric_labels as rpc_labels
from monitor.probes.stripe import StripeProbe
from monitor.probes.stripe import metric_labels as stripe_labels
from monitor.probes.treasury import TreasuryProbe
from monitor.scheduler import ProbeJob, ProbeScheduler
from monitor.scheduler import metric_labels as scheduler_labels
from payment.chain.client import ChainClient
from payment.chain.pool import PoolPolicy, ProviderPool
from payment.core.config import Settings
from payment.core.db import create_db_engine, make_session_factory
from payment.core.metrics import LabelSets, PaymentMetrics
from payment.core.metrics_server import serve_metrics
from payment.core.telemetry import Telemetry

__all__ = ["Monitor", "run"]

log = logging.getLogger(__name__)


class Monitor:
    def __init__(
        self, config: MonitorConfig, *, metrics: MonitorMetrics | None = None, settings: Settings | None = None
    ) -> None:
        self.config = config
        self.settings = settings if settings is not None else config.payment_settings()
        self.metrics = metrics if metrics is not None else MonitorMetrics(CollectorRegistry(auto_describe=True))
        self.runner = DbRunner()
        self.pool: ProviderPool | None = None
        self.stripe_client: stripe.StripeClient | None = None
        self.engines: list[Engine] = []
        self.rpc: RpcProbes | None = None
        self.label_sets: list[LabelSets] = []  # the series each probe built knows in advance
        self.jobs: list[ProbeJob] = self._build()
        # Every counter a dashboard or rule reads exists at 0 from the first scrape (docs/metrics.md).
        self.metrics.initialise(scheduler_labels(self.jobs), *self.label_sets)
        self._scheduler = ProbeScheduler(self.metrics, self.jobs)

    def _build(self) -> list[ProbeJob]:
        config, settings, m, labels = self.config, self.settings, self.metrics, self.label_sets
        jobs: list[ProbeJob] = []
        if config.rpc.enabled or config.treasury.enabled:
            policy = PoolPolicy(
                chain_id=settings.chain_id,
                timeout_seconds=config.rpc.call_timeout,
                max_attempts=settings.rpc_max_attempts,
            )
            # The pool's own per-call families (musdpay_rpc_*) are the API's; the monitor keeps them private.
            private = Telemetry(metrics=PaymentMetrics(CollectorRegistry(), process_collectors=False))
            self.pool = ProviderPool(settings.rpc_providers, policy, private)
        if config.rpc.enabled and self.pool is not None:
            self.rpc = RpcProbes(self.pool, config.rpc, m, chain_id=settings.chain_id)
            jobs += self.rpc.jobs()
            labels.append(rpc_labels(self.pool.names))

        if config.database.enabled:
            probe_engine = self._engine(settings.database_url, config.database.timeout, pooled=False)
            jobs.append(DatabaseProbe("primary", probe_engine, self.runner, config.database, m).job())
            labels.append(database_labels("primary", replica=False))
            if config.database.replica_url is not None:
                replica = self._engine(config.database.replica_url.get_secret_value(), config.database.timeout, False)
                jobs.append(DatabaseProbe("replica", replica, self.runner, config.database, m, replica=True).job())
                labels.append(database_labels("replica", replica=True))

        if config.archiver.enabled:
            archiver_engine = self._engine(settings.database_url, config.archiver.timeout, pooled=False)
            jobs.append(ArchiverProbe(archiver_engine, self.runner, config.archiver, m).job())

        if config.backup.enabled:  # scheduled backups, prune and verification (docs/backups.md)
            jobs.append(BackupJob.build(settings, config.backup, self.runner, m).job())
            labels.append(backup_labels())

        payments = PaymentsState()
        if config.payments.enabled or config.pipeline.enabled:
            timeout = max(config.payments.timeout, config.pipeline.timeout)
            reads = self._engine(settings.database_url, timeout, pooled=True)
            if config.payments.enabled:
                jobs.append(PaymentsProbe(reads, self.runner, config.payments, m, payments).job())
            if config.pipeline.enabled:
                jobs.append(PipelineProbe(reads, self.runner, config.pipeline, m).job())

        if config.stripe.enabled:
            if settings.stripe_secret_key is None:
                log.warning("Stripe probe off: no Stripe secret key configured (MUSDPAY_STRIPE_SECRET_KEY)")
            else:
                self.stripe_client = _stripe_client(settings, config.stripe.timeout * 0.9)
                jobs.append(StripeProbe(self.stripe_client, config.stripe, m, payments).job())
                labels.append(stripe_labels())

        if config.treasury.enabled and self.pool is not None:
            address = config.treasury.address
            if address is None and settings.treasury_key is not None:
                address = Account.from_key(settings.treasury_key.get_secret_value()).address
            if address is None:
                log.info("Treasury probe off: no treasury.address and no treasury key configured")
            else:
                treasury = TreasuryProbe(
                    ChainClient(self.pool),
                    address,
                    settings.musd_address,
                    config.treasury,
                    m,
                    min_musd=settings.treasury_min_musd,
                    min_btc=settings.treasury_min_btc,
                )
                jobs.append(treasury.job())

        if config.reverify.enabled:
            writer = create_db_engine(settings)
            self.engines.append(writer)
            jobs.append(
                ReverifyJob(writer, make_session_factory(writer), settings, self.runner, config.reverify, m).job()
            )
            labels.append(reverify_labels())
        return jobs

    def _engine(self, url: str, timeout: float, pooled: bool) -> Engine:
        engine = read_engine(url, timeout=timeout, pooled=pooled)
        self.engines.append(engine)
        return engine

    async def start(self) -> None:
        await self._scheduler.start()

    async def aclose(self) -> None:
        await self._scheduler.aclose()  # the runs in progress end before their clients close
        if self.pool is not None:
            await self.pool.aclose()
        if self.stripe_client is not None:
            http = self.stripe_client._requestor._client
            if http is not None:
                await http.close_async()  # type: ignore[no-untyped-call]
        self.runner.close()
        for engine in self.engines:
            engine.dispose()


def _stripe_client(settings: Settings, timeout: float) -> stripe.StripeClient:
    """The official SDK, without its retries: a probe must see each failure."""
    import aiohttp

    assert settings.stripe_secret_key is not None
    stripe.enable_telemetry = False
    base: dict[str, Any] = {"api": settings.stripe_api_base.rstrip("/")} if settings.stripe_api_base else {}
    return stripe.StripeClient(
        settings.stripe_secret_key.get_secret_value(),
        base_addresses=base,  # type: ignore[arg-type]
        stripe_version=settings.stripe_api_version,
        max_network_retries=0,
        http_client=stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout)),
    )


def run(config: MonitorConfig) -> None:
    """`musdpay monitor`: serve until SIGTERM or SIGINT, then stop cleanly (exit status 0)."""
    asyncio.run(_serve(config))


async def _serve(config: MonitorConfig) -> None:
    # APScheduler logs every run at INFO and every skipped run at WARNING; skips are counted in
    # musdpay_monitor_probe_skipped_total and failures logged by the scheduler wrapper, once per change.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # "Context impl ..." at every migration check
    monitor = Monitor(config)
    server = serve_metrics(monitor.metrics.registry, config.server.host, config.server.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await monitor.start()
        line = {"metricsUrl": server.url, "jobs": [job.id for job in monitor.jobs]}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        log.info("monitor running %d probe jobs; metrics on %s", len(monitor.jobs), server.url)
        await stop.wait()
        log.info("monitor stopping")
    finally:
        await monitor.aclose()
        server.close()
