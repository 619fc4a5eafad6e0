"""A real point-in-time recovery never makes the treasury pay twice (issue 15.4, "the same with a PITR restore").

A private PostgreSQL cluster archives its WAL (`musdpay pitr archive-wal`, archive_timeout 1 s) and has a base
backup taken before anything is delivered. `musdpay deliver` processes deliver twenty sessions in treasury mode on
anvil; a target time is taken after the tenth is verified. The cluster is then destroyed, laid out again at the
target by `musdpay pitr restore` in a new data directory, started and promoted, and a fresh `musdpay deliver` runs
on it. Nobody calls `record_restore`: a real PITR leaves no marker, so only the treasury's nonce on chain, ahead of
the restored database's, can start the recovery. The chain then holds exactly twenty transfers from the treasury,
every session is verified with the hash the chain holds, the worker's own /metrics counts each forgotten delivery
as recovered, and the next send takes the next nonce. A second case puts the target between a nonce reserved and
its transfer broadcast (the `treasury_after_reserve` crash point of `musdpay deliver`).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from payment.core.db import create_db_engine, make_session_factory
from payment.delivery.models import Delivery
from payment.delivery.recovery import open_markers
from payment.delivery.status import DeliveryStatus
from payment.onramp.models import OnrampSession
from tests.payment.delivery.conftest import (
    DeliveryRig,
    assert_paid_once,
    complete,
    count_deliveries,
    start_worker,
    treasury_transfers,
    unpaid_session,
)
from tests.support.pgpitr import (
    PitrCluster,
    pg_bindir,
    pitr_cluster,
    server_directory,
    server_musdpay_command,
    switch_wal_and_wait_archived,
)
from tests.support.services import ChildProcess, require, wait_http_ok
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("delivery_settings", [{"delivery_mode": "treasury"}]),
]

MUSDPAY = [sys.executable, "-m", "musdpay"]
VERIFIED = Delivery.status == DeliveryStatus.verified.value
PENDING = Delivery.status == DeliveryStatus.pending.value


@dataclass
class Pitr:
    cluster: PitrCluster
    archive: Path  # the WAL archive and base backups (a directory the server's user writes)
    prefix: str  # how the server runs musdpay (archive_command, restore_command)


@pytest.fixture
def pitr() -> Iterator[Pitr]:
    require(pg_bindir() is not None, "PostgreSQL server binaries (initdb, pg_ctl) not installed")
    root = server_directory()  # pitr_cluster removes it, with every cluster started in it
    prefix = server_musdpay_command()
    archive = root / "archive"
    command = f"{prefix} pitr archive-wal %p %f --dest {archive}"
    with pitr_cluster(root, archive_command=command, archive_timeout_seconds=1, wal_segsize_mb=1) as cluster:
        yield Pitr(cluster, archive, prefix)


@pytest.fixture
def database_url(pitr: Pitr) -> str:
    """The delivery rig (tests/payment/delivery/conftest.py) on the private, archiving cluster."""
    return pitr.cluster.url


# --- helpers of this module ---------------------------------------------------------------------------------------


def _musdpay(*args: str) -> str:
    done = subprocess.run([*MUSDPAY, *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"musdpay {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def base_backup(pitr: Pitr) -> str:
    """`musdpay pitr base-backup`: its id (the last line it prints)."""
    out = _musdpay("pitr", "base-backup", "--dest", str(pitr.archive), "--database-url", pitr.cluster.url)
    return out.strip().splitlines()[-1]


def target_now() -> datetime:
    """The recovery target: now, once the clock has moved past it (so no later commit shares its timestamp)."""
    target = datetime.now(UTC)
    wait_until(lambda: datetime.now(UTC) > target + timedelta(milliseconds=20), what="the clock past the target")
    return target


def deliver_with_worker(rig: DeliveryRig, tmp_path: Path, name: str, until: Callable[[], bool]) -> None:
    """A `musdpay deliver` process until `until()` holds, then stopped cleanly."""
    worker = start_worker(rig, tmp_path, name)
    try:
        wait_until(until, timeout=30, interval=0.05, what=f"worker {name}: its deliveries verified")
    finally:
        assert worker.stop() == 0, worker.log()


def metric(worker: ChildProcess, name: str, **labels: str) -> float:
    """A sample from the worker's own /metrics (as Prometheus scrapes job musdpay-deliver)."""
    url = f"http://127.0.0.1:{worker.env['MUSDPAY_DELIVERY_METRICS_PORT']}/metrics"
    wait_http_ok(url, worker)
    text = httpx.get(url, timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@contextmanager
def restored_at(rig: DeliveryRig, pitr: Pitr, target: datetime, backup_id: str) -> Iterator[DeliveryRig]:
    """The cluster destroyed and recovered to `target` from the base backup and the WAL archive in a new data
    directory on a new port; the rig on it (same chain, same clock)."""
    switch_wal_and_wait_archived(pitr.cluster.conninfo)  # the WAL past the target is in the archive
    rig.engine.dispose()
    pitr.cluster.destroy()
    restored = pitr.cluster.sibling("restored")
    out = _musdpay(
        "pitr", "restore", "--dest", str(pitr.archive), "--pgdata", str(restored.data),
        "--target-time", target.isoformat(), "--command", pitr.prefix,
    )  # fmt: skip
    assert backup_id in out, out
    restored.chown(restored.data)
    restored.start()
    restored.wait_promoted(timeout=60)
    settings = rig.settings.model_copy(update={"database_url": restored.url})
    engine = create_db_engine(settings)
    try:
        yield replace(rig, settings=settings, engine=engine, factory=make_session_factory(engine))
    finally:
        engine.dispose()


def nonce(rig: DeliveryRig) -> int:
    return int(rig.chain.w3.eth.get_transaction_count(rig.chain.treasury_address))


def recover_and_check(
    restored: DeliveryRig, tmp_path: Path, sessions: list[OnrampSession], *, before: int, first_nonce: int
) -> None:
    """A fresh worker on the restored database, with no restore marker: it must find the restore by the nonce,
    rebuild every forgotten delivery from the chain, pay nobody again, then send the next one at the next nonce."""
    assert open_markers(restored.factory) == []  # a real PITR announces nothing
    forgotten = len(sessions) - count_deliveries(restored, VERIFIED)
    assert forgotten == 10, f"the restored database remembers {len(sessions) - forgotten} verified deliveries, not 10"
    worker = start_worker(restored, tmp_path, "after-pitr")
    try:
        try:
            wait_until(
                lambda: (
                    count_deliveries(restored, VERIFIED) == len(sessions)
                    and "delivery recovery finished" in worker.log()
                ),
                timeout=30,
                interval=0.05,
                what="every delivery rebuilt from the chain after the point-in-time restore",
            )
        except AssertionError as exc:  # what the worker said is the diagnosis
            raise AssertionError(f"{exc}\nworker log:\n{worker.log()[-4000:]}") from None
        assert metric(worker, "musdpay_delivery_recovered_total") == forgotten
        assert metric(worker, "musdpay_delivery_recovery_in_progress") == 0
        for kind in ("no_reference", "unknown_session", "mismatch", "paid_twice"):
            assert metric(worker, "musdpay_delivery_recovery_discrepancies_total", kind=kind) == 0, kind
        [finished] = [line for line in worker.log().splitlines() if "delivery recovery finished" in line]
        assert "nonce on chain" in finished, finished  # found by the nonce: there was no marker to find
        assert f"{forgotten} deliveries rebuilt" in finished, finished
        # The next paid session after the recovery: sent, at the nonce after every transfer the restore forgot.
        extra = restored.paid_session("5")
        wait_until(lambda: restored.delivery(extra.id).status == DeliveryStatus.verified, timeout=20, what="next send")
    finally:
        assert worker.stop() == 0, worker.log()
    assert_paid_once(restored, [*sessions, extra], before)
    assert restored.delivery(extra.id).nonce == first_nonce + len(sessions)
    assert nonce(restored) == first_nonce + len(sessions) + 1


# --- the restores ---------------------------------------------------------------------------------------------------


def test_a_point_in_time_restore_to_after_ten_sends_pays_nobody_twice(
    rig: DeliveryRig, pitr: Pitr, tmp_path: Path
) -> None:
    before, first_nonce = len(treasury_transfers(rig)), nonce(rig)
    backup_id = base_backup(pitr)
    first = [rig.paid_session(f"{10 + i}.25") for i in range(10)]
    deliver_with_worker(rig, tmp_path, "first", lambda: count_deliveries(rig, VERIFIED) == 10)
    # At the target: five more paid (deliveries due, not sent yet), five not paid yet (no delivery row).
    due = [rig.paid_session(f"{30 + i}.5") for i in range(5)]
    later = [unpaid_session(rig, f"{40 + i}.75") for i in range(5)]
    target = target_now()
    for session in later:
        assert complete(rig, session)
    deliver_with_worker(rig, tmp_path, "second", lambda: count_deliveries(rig, VERIFIED) == 20)
    sessions = [*first, *due, *later]
    assert_paid_once(rig, sessions, before)

    with restored_at(rig, pitr, target, backup_id) as restored:
        assert count_deliveries(restored, PENDING) == 5  # the five due are due again; the five later have no delivery
        assert count_deliveries(restored) == 15
        recover_and_check(restored, tmp_path, sessions, before=before, first_nonce=first_nonce)


def test_a_point_in_time_restore_between_reserve_and_broadcast_pays_nobody_twice(
    rig: DeliveryRig, pitr: Pitr, tmp_path: Path
) -> None:
    before, first_nonce = len(treasury_transfers(rig)), nonce(rig)
    backup_id = base_backup(pitr)
    first = [rig.paid_session(f"{10 + i}.25") for i in range(10)]
    deliver_with_worker(rig, tmp_path, "first", lambda: count_deliveries(rig, VERIFIED) == 10)
    rest = [rig.paid_session(f"{30 + i}.5") for i in range(10)]
    # The target: `musdpay deliver` died right after the database reserved a nonce, before anything was broadcast.
    crashing = start_worker(rig, tmp_path, "crashing", MUSDPAY_CRASH_POINTS="treasury_after_reserve")
    try:
        wait_until(lambda: not crashing.alive(), timeout=30, what="the worker to die at treasury_after_reserve")
    finally:
        crashing.kill()
    assert count_deliveries(rig, Delivery.nonce.is_not(None), PENDING) == 1
    assert nonce(rig) == first_nonce + 10  # reserved in the database only
    target = target_now()
    deliver_with_worker(rig, tmp_path, "second", lambda: count_deliveries(rig, VERIFIED) == 20)
    sessions = [*first, *rest]
    assert_paid_once(rig, sessions, before)

    with restored_at(rig, pitr, target, backup_id) as restored:
        # Back to the reserved-but-unsent moment, while that transfer (and nine more) is on chain.
        assert count_deliveries(restored, Delivery.nonce.is_not(None), PENDING) == 1
        assert count_deliveries(restored, PENDING) == 10
        recover_and_check(restored, tmp_path, sessions, before=before, first_nonce=first_nonce)
