"""Running a monitor in the test process (its own event loop on a thread) and seeding the payment database."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from monitor.app import Monitor
from monitor.config import MonitorConfig
from monitor.metrics import MonitorMetrics
from payment.delivery.models import Delivery
from payment.onramp.models import OnrampSession, SessionStatusChange
from payment.webhooks.models import WebhookEvent
from tests.support.waiting import wait_until

__all__ = [
    "WALLET",
    "RunningMonitor",
    "config_of",
    "running_monitor",
    "seed_delivery",
    "seed_session",
    "seed_webhook",
]

WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"

# Every probe off unless a test turns it on, with short intervals.
QUIET: dict[str, Any] = {
    "server": {"port": 0},
    "rpc": {"enabled": False, "interval_seconds": 0.2, "jitter_seconds": 0.02, "timeout_seconds": 1.0},
    "stripe": {"enabled": False, "interval_seconds": 0.2, "jitter_seconds": 0.02, "timeout_seconds": 2.0},
    "payments": {"enabled": False, "interval_seconds": 0.2, "jitter_seconds": 0.02, "timeout_seconds": 2.0},
    "database": {"enabled": False, "interval_seconds": 0.2, "jitter_seconds": 0.02, "timeout_seconds": 3.0},
    "pipeline": {"enabled": False, "interval_seconds": 0.2, "jitter_seconds": 0.02, "timeout_seconds": 2.0},
    "treasury": {"enabled": False, "interval_seconds": 0.2, "jitter_seconds": 0.02, "timeout_seconds": 2.0},
    "reverify": {"enabled": False, "interval_seconds": 0.2, "jitter_seconds": 0.02, "timeout_seconds": 3.0},
}


def config_of(settings: dict[str, Any], **sections: dict[str, Any]) -> MonitorConfig:
    """QUIET with `settings` and each given section merged over it (`enabled: True` implied)."""
    raw: dict[str, Any] = {name: dict(values) for name, values in QUIET.items()}
    raw["settings"] = {"environment": "test", **settings}
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), "enabled": True, **values}
    return MonitorConfig.model_validate(raw)


@dataclass
class RunningMonitor:
    monitor: Monitor
    loop: asyncio.AbstractEventLoop

    @property
    def registry(self) -> CollectorRegistry:
        return self.monitor.metrics.registry

    @property
    def metrics(self) -> MonitorMetrics:
        return self.monitor.metrics

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def count(self, name: str, **labels: str) -> float:
        return self.value(name, **labels) or 0.0

    def runs(self, probe: str, target: str, outcome: str = "success") -> float:
        return self.count("musdpay_monitor_probe_runs_total", probe=probe, target=target, outcome=outcome)

    def wait(self, condition: Callable[[], object], *, timeout: float = 10.0, what: str = "") -> Any:
        return wait_until(condition, timeout=timeout, interval=0.01, what=what)

    def wait_runs(self, probe: str, target: str, more: int = 2, *, outcome: str | None = None) -> None:
        """Until `more` further runs of the probe have finished (with `outcome`, or any)."""
        outcomes = [outcome] if outcome else ["success", "failure", "timeout"]

        def total() -> float:
            return sum(self.runs(probe, target, o) for o in outcomes)

        start = total()
        self.wait(lambda: total() >= start + more, what=f"{more} more runs of {probe}:{target}")


@contextmanager
def running_monitor(config: MonitorConfig) -> Iterator[RunningMonitor]:
    monitor = Monitor(config, metrics=MonitorMetrics(CollectorRegistry(), process_collectors=False))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name="monitor-under-test")
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(monitor.start(), loop).result(10)
        yield RunningMonitor(monitor, loop)
    finally:
        try:
            asyncio.run_coroutine_threadsafe(monitor.aclose(), loop).result(30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()


def seed_session(
    factory: sessionmaker[Session], *, status: str, age: timedelta = timedelta(0), **fields: Any
) -> OnrampSession:
    """A session row `age` old (created and last updated then), with a status change into its status."""
    at = datetime.now(UTC) - age
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "stripe_session_id": f"cos_{uuid.uuid4().hex[:24]}",
        "client_secret": f"cos_secret_{uuid.uuid4().hex}",
        "status": status,
        "livemode": False,
        "wallet_address": WALLET,
        "source_amount": Decimal("100.00"),
        "source_currency": "usd",
        "destination_currency": "musd",
        "destination_network": "mezo",
        "request_fingerprint": "0" * 64,
        "last_event_id": "",
        "last_event_created": 0,
        "created_at": at,
        "updated_at": at,
    }
    values.update(fields)
    row = OnrampSession(**values)
    with factory() as db, db.begin():
        db.add(row)
        db.add(
            SessionStatusChange(
                session_id=row.id,
                from_status=None,
                to_status=status,
                source="webhook",
                occurred_at=values["updated_at"],
            )
        )
    return row


def seed_delivery(
    factory: sessionmaker[Session], session: OnrampSession, *, status: str, due_age: timedelta, **fields: Any
) -> None:
    due = datetime.now(UTC) - due_age
    values: dict[str, Any] = {
        "session_id": session.id,
        "mode": "onramp",
        "status": status,
        "wallet_address": session.wallet_address,
        "next_check_at": due,
        "deadline_at": due + timedelta(hours=1),
        "created_at": due,
        "updated_at": due,
    }
    values.update(fields)
    with factory() as db, db.begin():
        db.add(Delivery(**values))


def seed_webhook(factory: sessionmaker[Session], *, age: timedelta) -> None:
    at = datetime.now(UTC) - age
    with factory() as db, db.begin():
        db.add(
            WebhookEvent(
                id=f"evt_{uuid.uuid4().hex[:24]}",
                type="crypto.onramp_session_updated",
                stripe_created=int(at.timestamp()),
                received_at=at,
                processed_at=at,
                outcome="processed",
                payload="{}",
            )
        )
