"""A delivery rig: a fresh anvil chain, the API's database (SQLite or PostgreSQL), a provider pool and a
delivery worker on one event loop, with a clock the test moves."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from eth_account import Account
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from payment.chain.client import ChainClient
from payment.chain.pool import ProviderPool
from payment.core import migrations
from payment.core.config import Settings
from payment.core.db import core_transaction, create_db_engine, make_session_factory, run_db_on
from payment.core.metrics import PaymentMetrics
from payment.core.statements import direct_transaction
from payment.core.telemetry import Telemetry
from payment.delivery.models import Delivery, DeliveryTransaction
from payment.delivery.outbox import enqueue_delivery
from payment.delivery.reference import decode_transfer
from payment.delivery.status import DeliveryStatus
from payment.delivery.worker import DeliveryWorker
from payment.onramp.models import OnrampSession
from sandbox.chain.local import LocalChain, running_chain
from sandbox.chain.musd import to_units
from tests.payment.conftest import make_settings, seed_session
from tests.sandbox.chain.support import require_anvil
from tests.support.services import ChildProcess, free_port, musdpay_command, start_process

T = TypeVar("T")


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class DeliveryRig:
    chain: LocalChain
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    runner: asyncio.Runner
    clock: Clock
    telemetry: Telemetry
    pool: ProviderPool

    @property
    def client(self) -> ChainClient:
        return ChainClient(self.pool)

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.runner.run(awaitable)  # type: ignore[arg-type]

    def worker(self, **overrides: Any) -> DeliveryWorker:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        return DeliveryWorker(
            settings=settings,
            factory=self.factory,
            run_db=run_db_on(self.engine),
            chain=self.client,
            telemetry=self.telemetry,
            clock=self.clock,
        )

    def paid_session(
        self, amount: str = "98.50", *, wallet: str | None = None, transaction_id: str | None = None
    ) -> OnrampSession:
        """A session Stripe reports fulfilled, with its delivery due (as the webhook path writes it)."""
        row = seed_session(
            self.factory,
            status="fulfillment_complete",
            wallet_address=wallet or new_wallet(),
            destination_amount=Decimal(amount),
            transaction_id=transaction_id,
        )
        with direct_transaction(self.factory) as conn:
            assert enqueue_delivery(
                conn,
                row,
                mode=self.settings.delivery_mode,
                deadline_seconds=self.settings.delivery_deadline_seconds,
                now=self.clock(),
            )
        return row

    def delivery(self, session_id: str) -> Delivery:
        with self.factory() as db:
            row = db.get(Delivery, session_id)
            assert row is not None
            db.expunge(row)
            return row

    def attempts(self, session_id: str) -> list[DeliveryTransaction]:
        with self.factory() as db:
            rows = db.scalars(
                select(DeliveryTransaction)
                .where(DeliveryTransaction.session_id == session_id)
                .order_by(DeliveryTransaction.created_at)
            ).all()
            db.expunge_all()
            return list(rows)

    def attempt_count(self) -> int:
        with self.factory() as db:
            return db.scalar(select(func.count()).select_from(DeliveryTransaction)) or 0

    def transfers_to(self, wallet: str) -> list[dict[str, Any]]:
        """Every MUSD Transfer to `wallet` on the whole chain (what the buyer actually received)."""
        musd = self.chain.musd.contract
        logs = musd.events.Transfer().get_logs(from_block=0, argument_filters={"to": wallet})
        return [dict(log["args"]) for log in logs]

    def metric(self, name: str, **labels: str) -> float:
        value = self.telemetry.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


def new_wallet() -> str:
    return str(Account.create().address)


def units(amount: str) -> int:
    return to_units(amount)


def rig_settings(database_url: str, chain: LocalChain, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "chain_id": chain.chain_id,
        "rpc_providers": f"local={chain.rpc_url}",
        "musd_address": chain.musd_address,
        "rpc_timeout_seconds": 2.0,
        "delivery_retry_initial_seconds": 1.0,
        "delivery_retry_max_seconds": 60.0,
        "delivery_deadline_seconds": 600.0,
        "treasury_key": chain.treasury_key,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@pytest.fixture
def chain_params() -> dict[str, Any]:
    """Overridden by a test module (e.g. automine off) through indirect parametrisation or a fixture."""
    return {}


@pytest.fixture
def delivery_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def rig(database_url: str, chain_params: dict[str, Any], delivery_settings: dict[str, Any]) -> Iterator[DeliveryRig]:
    require_anvil()
    with running_chain(**chain_params) as chain, asyncio.Runner() as runner:
        settings = rig_settings(database_url, chain, **delivery_settings)
        engine = create_db_engine(settings)
        migrations.upgrade(engine)
        telemetry = Telemetry(metrics=PaymentMetrics(CollectorRegistry(), process_collectors=False))
        pool = ProviderPool.from_settings(settings, telemetry)
        rig = DeliveryRig(chain, settings, engine, make_session_factory(engine), runner, Clock(), telemetry, pool)
        try:
            yield rig
        finally:
            runner.run(pool.aclose())
            engine.dispose()


def unique_id() -> str:
    return uuid.uuid4().hex


def start_worker(rig: DeliveryRig, tmp_path: Path, name: str, **extra: str) -> ChildProcess:
    """`musdpay deliver` in treasury mode on the rig's database and chain, as its own process (its log in tmp_path),
    with its /metrics on a free port (`env["MUSDPAY_DELIVERY_METRICS_PORT"]`)."""
    env = {
        "MUSDPAY_ENVIRONMENT": "test",
        "MUSDPAY_DATABASE_URL": rig.settings.database_url,
        "MUSDPAY_CHAIN_ID": str(rig.chain.chain_id),
        "MUSDPAY_RPC_PROVIDERS": f"local={rig.chain.rpc_url}",
        "MUSDPAY_MUSD_ADDRESS": rig.chain.musd_address,
        "MUSDPAY_DELIVERY_MODE": "treasury",
        "MUSDPAY_TREASURY_KEY": rig.chain.treasury_key,
        "MUSDPAY_DELIVERY_POLL_SECONDS": "0.05",
        "MUSDPAY_DELIVERY_LEASE_SECONDS": "1",
        "MUSDPAY_LOG_FORMAT": "text",
        "MUSDPAY_DELIVERY_METRICS_PORT": str(free_port()),
        **extra,
    }
    return start_process(musdpay_command("deliver"), env=env, log_path=tmp_path / f"{name}.log")


def count_deliveries(rig: DeliveryRig, *where: Any) -> int:
    with rig.factory() as db:
        return db.scalar(select(func.count()).select_from(Delivery).where(*where)) or 0


def unpaid_session(rig: DeliveryRig, amount: str) -> OnrampSession:
    return seed_session(
        rig.factory, status="fulfillment_processing", wallet_address=new_wallet(), destination_amount=Decimal(amount)
    )


def complete(rig: DeliveryRig, session: OnrampSession) -> bool:
    """Stripe's fulfillment_complete applied to the session, then its delivery enqueued as the webhook path does;
    True if that created the delivery."""
    with core_transaction(rig.factory) as conn:
        conn.execute(update(OnrampSession).where(OnrampSession.id == session.id).values(status="fulfillment_complete"))
    session.status = "fulfillment_complete"
    with direct_transaction(rig.factory) as conn:
        return enqueue_delivery(
            conn,
            session,  # type: ignore[arg-type]  # the fields enqueue_delivery reads
            mode=rig.settings.delivery_mode,
            deadline_seconds=rig.settings.delivery_deadline_seconds,
            now=rig.clock(),
        )


def treasury_transfers(rig: DeliveryRig) -> list[dict[str, Any]]:
    """Every MUSD Transfer from the treasury on the whole chain: what the treasury really paid."""
    musd = rig.chain.musd.contract
    logs = musd.events.Transfer().get_logs(from_block=0, argument_filters={"from": rig.chain.treasury_address})
    return [{**dict(log["args"]), "tx": log["transactionHash"].to_0x_hex()} for log in logs]


def assert_paid_once(rig: DeliveryRig, sessions: list[OnrampSession], before: int) -> None:
    transfers = treasury_transfers(rig)
    assert len(transfers) == before + len(sessions), "the treasury paid a different number of transfers"
    for session in sessions:
        delivery = rig.delivery(session.id)
        assert delivery.status == DeliveryStatus.verified, (session.id, delivery.status, delivery.reason)
        paid = [t for t in transfers if t["to"] == session.wallet_address]
        assert len(paid) == 1, f"session {session.id} was paid {len(paid)} times"
        assert paid[0]["value"] == units(str(session.destination_amount))
        assert delivery.tx_hash == paid[0]["tx"]
        # The chain itself names the session this transfer paid.
        tx = rig.chain.w3.eth.get_transaction(paid[0]["tx"])
        call = decode_transfer(tx["input"])
        assert call is not None
        assert call.session_id == session.id
