"""Treasury delivery survives SIGKILL at every step: `musdpay deliver` is killed at a crash point, started
again, and the buyer ends up paid exactly once (counted on chain, not in our database)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from payment.delivery.status import DeliveryStatus
from tests.payment.delivery.conftest import DeliveryRig, start_worker, units
from tests.support.services import ChildProcess, wait_http_ok
from tests.support.waiting import wait_until

pytestmark = pytest.mark.parametrize("delivery_settings", [{"delivery_mode": "treasury"}])


def _delivered(worker: ChildProcess) -> float:
    """`musdpay_delivery_total{outcome="verified"}` from the worker's own /metrics."""
    port = worker.env["MUSDPAY_DELIVERY_METRICS_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "musdpay_delivery_total" and sample.labels.get("outcome") == "verified"
    )


@pytest.mark.parametrize(
    "point",
    ["treasury_after_reserve", "treasury_after_sign", "treasury_after_broadcast", "delivery_before_save"],
)
def test_killed_at_any_step_the_buyer_is_paid_exactly_once(rig: DeliveryRig, tmp_path: Path, point: str) -> None:
    sessions = [rig.paid_session("25.75"), rig.paid_session("30")]

    crashing = start_worker(rig, tmp_path, "crashing", MUSDPAY_CRASH_POINTS=point)
    try:
        wait_until(lambda: not crashing.alive(), timeout=30, what=f"the worker to die at {point}")
    finally:
        crashing.kill()
    assert crashing.popen.returncode == -signal.SIGKILL, crashing.log()

    worker = start_worker(rig, tmp_path, "restarted")
    try:
        wait_until(
            lambda: all(rig.delivery(s.id).status == DeliveryStatus.verified for s in sessions),
            timeout=30,
            what="both deliveries to be verified after the restart",
        )
        # Its own /metrics (scraped as job musdpay-deliver) counts what this process delivered.
        assert _delivered(worker) == 2
    finally:
        assert worker.stop() == 0, worker.log()
    for session in sessions:
        assert len(rig.transfers_to(session.wallet_address)) == 1
        assert rig.chain.musd_balance(session.wallet_address) == units(str(session.destination_amount))
        assert len(rig.attempts(session.id)) == 1


def test_two_workers_at_once_pay_each_buyer_exactly_once(rig: DeliveryRig, tmp_path: Path) -> None:
    # As a deployment runs them (two replicas of `musdpay deliver`): the lease lets one of them send each delivery.
    sessions = [rig.paid_session(f"{10 + i}.25") for i in range(6)]
    workers = [start_worker(rig, tmp_path, name) for name in ("first", "second")]
    try:
        for worker in workers:  # both up (their /metrics answer) whichever gets the lease
            wait_http_ok(f"http://127.0.0.1:{worker.env['MUSDPAY_DELIVERY_METRICS_PORT']}/metrics", worker)
        wait_until(
            lambda: all(rig.delivery(s.id).status == DeliveryStatus.verified for s in sessions),
            timeout=60,
            what="every delivery verified with two workers running",
        )
        assert sum(_delivered(worker) for worker in workers) == len(sessions)  # each counted by one of them
    finally:
        codes = [worker.stop() for worker in workers]  # every one stopped before any assertion
        assert codes == [0, 0], [worker.log() for worker in workers]
    for session in sessions:
        assert len(rig.transfers_to(session.wallet_address)) == 1
        assert rig.chain.musd_balance(session.wallet_address) == units(str(session.destination_amount))
        assert len(rig.attempts(session.id)) == 1
