"""`musdpay deliver`: the delivery worker as its own process (for deployments that keep it out of the API).

It serves the delivery and RPC metrics on its own `/metrics` (`MUSDPAY_DELIVERY_METRICS_PORT`, on
`MUSDPAY_HOST`): scraped as job `musdpay-deliver`, which the delivery alerts and SLOs select with the API's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from payment.chain import pool as rpc_pool
from payment.chain.client import ChainClient
from payment.chain.pool import ProviderPool
from payment.core.config import Settings
from payment.core.db import create_db_engine, make_session_factory, run_db_on
from payment.core.metrics import PaymentMetrics
from payment.core.metrics_server import serve_metrics
from payment.core.telemetry import Telemetry
from payment.delivery import worker as delivery_worker
from payment.delivery.worker import DeliveryWorker

__all__ = ["run_worker"]

log = logging.getLogger(__name__)


async def _serve(settings: Settings) -> None:
    telemetry = Telemetry(metrics=PaymentMetrics())
    engine = create_db_engine(settings)
    factory = make_session_factory(engine)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with ProviderPool.from_settings(settings, telemetry) as pool:
        metrics = telemetry.metrics
        # The worker's families exist at 0 from the first scrape, as in the API (docs/metrics.md).
        metrics.initialise(delivery_worker.metric_labels(settings), rpc_pool.metric_labels(pool.names))
        metrics.watch_pool(engine)
        server = serve_metrics(metrics.registry, settings.host, settings.delivery_metrics_port)
        log.info("delivery worker started", extra={"metrics_url": server.url, "mode": settings.delivery_mode.value})
        worker = DeliveryWorker(
            settings=settings,
            factory=factory,
            run_db=run_db_on(engine),
            chain=ChainClient(pool),
            telemetry=telemetry,
        )
        task = asyncio.create_task(worker.run())
        try:
            await stop.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            server.close()
    engine.dispose()


def run_worker(settings: Settings) -> None:
    asyncio.run(_serve(settings))
