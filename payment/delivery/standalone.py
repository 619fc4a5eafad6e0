"""`musdpay deliver`: the delivery worker as its own process (for deployments that keep it out of the API)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from payment.chain.client import ChainClient
from payment.chain.pool import ProviderPool
from payment.core.config import Settings
from payment.core.db import create_db_engine, make_session_factory, run_db_on
from payment.core.metrics import PaymentMetrics
from payment.core.telemetry import Telemetry
from payment.delivery.worker import DeliveryWorker

__all__ = ["run_worker"]


async def _serve(settings: Settings) -> None:
    telemetry = Telemetry(metrics=PaymentMetrics())
    engine = create_db_engine(settings)
    factory = make_session_factory(engine)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with ProviderPool.from_settings(settings, telemetry) as pool:
        worker = DeliveryWorker(
            settings=settings,
            factory=factory,
            run_db=run_db_on(engine),
            chain=ChainClient(pool),
            telemetry=telemetry,
        )
        task = asyncio.create_task(worker.run())
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    engine.dispose()


def run_worker(settings: Settings) -> None:
    asyncio.run(_serve(settings))
