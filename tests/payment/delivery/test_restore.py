"""A database restore never makes the treasury pay twice (issue 15.4). Real anvil, SQLite and PostgreSQL.

Twenty sessions are delivered in treasury mode; the database is snapshotted after ten (SQLite's online backup
API; pg_dump), restored over the live one, and the worker started again: the chain holds exactly twenty
transfers from the treasury, every session is verified, and no wallet was paid twice, whether the restore is
announced by a restore marker or only seen in the treasury's nonce, and after a point-in-time restore to a
moment between reserving a nonce and broadcasting it (a crash point of `musdpay deliver`).
"""

from __future__ import annotations

import glob
import shutil
import sqlite3
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from payment.delivery.models import Delivery, RestoreMarker
from payment.delivery.recovery import record_restore
from payment.delivery.reference import decode_transfer, encode_transfer
from payment.delivery.status import DeliveryStatus
from payment.ledgers.findings import Kind
from payment.ledgers.service import build_context, check_ledgers
from tests.payment.delivery.conftest import (
    DeliveryRig,
    assert_paid_once,
    complete,
    count_deliveries,
    new_wallet,
    start_worker,
    treasury_transfers,
    units,
    unpaid_session,
)
from tests.support.services import require
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

TREASURY = [{"delivery_mode": "treasury"}]


# --- the reference, alone ---------------------------------------------------------------------------------------


def test_the_reference_round_trips_through_the_calldata() -> None:
    session_id = str(uuid.uuid4())
    wallet = new_wallet()
    data = encode_transfer(wallet, 12_345, session_id)
    assert data[:4] == bytes.fromhex("a9059cbb")
    assert len(data) == 4 + 64 + 16
    call = decode_transfer("0x" + data.hex())
    assert call is not None
    assert (call.recipient, call.units, call.session_id) == (wallet.lower(), 12_345, session_id)
    # A plain transfer pays someone but names no session; other calls and junk are not transfers.
    plain = decode_transfer(data[:-16])
    assert plain is not None
    assert (plain.session_id, plain.units) == (None, 12_345)
    odd = decode_transfer(data + b"\x00")  # trailing bytes that are not exactly one reference name nothing
    assert odd is not None
    assert odd.session_id is None
    assert decode_transfer(bytes.fromhex("095ea7b3") + data[4:]) is None  # approve(...)
    for junk in ("0xzz", None, data[:40]):
        assert decode_transfer(junk) is None
    with pytest.raises(ValueError, match="not a UUID"):
        encode_transfer(wallet, 1, "cos_not_a_uuid")


# --- helpers of this module: the rig's database snapshotted and restored ---------------------------------------


def _pg_tool(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [p for p in [shutil.which(name)] if p]
    require(bool(found), f"{name} (PostgreSQL client binaries) not found")
    return found[-1]


def _libpq_url(rig: DeliveryRig) -> str:
    return rig.settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def snapshot(rig: DeliveryRig, path: Path) -> Path:
    """A backup of the live database now, as the backup tool takes it (online, while the service runs)."""
    if rig.engine.dialect.name == "sqlite":
        source, target = sqlite3.connect(str(rig.engine.url.database)), sqlite3.connect(path)
        with target:
            source.backup(target)
        source.close()
        target.close()
    else:
        subprocess.run([_pg_tool("pg_dump"), "-Fc", "-f", str(path), _libpq_url(rig)], check=True, timeout=60)
    return path


def restore(rig: DeliveryRig, path: Path) -> None:
    """The live database replaced by the backup (the service's connections dropped first, as a restore does)."""
    rig.engine.dispose()
    if rig.engine.dialect.name == "sqlite":
        source, target = sqlite3.connect(path), sqlite3.connect(str(rig.engine.url.database))
        with target:
            source.backup(target)
        source.close()
        target.close()
    else:
        command = [_pg_tool("pg_restore"), "--clean", "--if-exists", "--single-transaction", "--no-owner"]
        subprocess.run([*command, "-d", _libpq_url(rig), str(path)], check=True, timeout=60)
    rig.engine.dispose()


def deliver(rig: DeliveryRig, **overrides: Any) -> None:
    """Worker rounds until no delivery is pending (as test_treasury.py: the clock brings the next round forward)."""
    worker = rig.worker(**overrides)
    rig.run(worker.run_once())
    deadline = time.monotonic() + 30
    while count_deliveries(rig, Delivery.status == DeliveryStatus.pending.value):
        assert time.monotonic() < deadline, "a delivery was still pending after 30 s of worker rounds"
        rig.clock.advance(rig.settings.delivery_retry_max_seconds)
        rig.run(worker.run_once())


# --- the restore -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delivery_settings", TREASURY)
@pytest.mark.parametrize("announced", [True, False], ids=["restore-marker", "nonce-only"])
def test_a_restore_to_before_ten_sends_pays_nobody_twice(rig: DeliveryRig, tmp_path: Path, announced: bool) -> None:
    before = len(treasury_transfers(rig))
    first = [rig.paid_session(f"{10 + i}.25") for i in range(10)]
    deliver(rig)
    assert count_deliveries(rig, Delivery.status == DeliveryStatus.verified.value) == 10
    # At the backup: five more paid (their deliveries due, not sent yet), five not paid yet (no delivery row).
    due = [rig.paid_session(f"{30 + i}.5") for i in range(5)]
    later = [unpaid_session(rig, f"{40 + i}.75") for i in range(5)]
    backup = snapshot(rig, tmp_path / "backup")
    for session in later:
        assert complete(rig, session)
    deliver(rig)
    sessions = [*first, *due, *later]
    assert_paid_once(rig, sessions, before)

    restore(rig, backup)
    assert count_deliveries(rig, Delivery.status == DeliveryStatus.verified.value) == 10  # the restore forgot ten sends
    if announced:
        record_restore(rig.engine, backup_id="test-backup", note="restored by the test")
    deliver(rig)

    assert_paid_once(rig, sessions, before)
    assert rig.metric("musdpay_delivery_recovered_total") == 10
    assert rig.metric("musdpay_delivery_recovery_in_progress") == 0
    assert rig.metric("musdpay_delivery_recovery_discrepancies_total", kind="no_reference") == 0
    with rig.factory() as db:
        assert (
            db.scalar(select(func.count()).select_from(RestoreMarker).where(RestoreMarker.resolved_at.is_(None))) == 0
        )
    # Stripe's completion of the forgotten five arrives again (a retried webhook): no second delivery row.
    for session in later:
        assert not complete(rig, session)
    # And the next sends take the next nonces, after those the restore forgot.
    extra = rig.paid_session("5")
    deliver(rig)
    assert_paid_once(rig, [*sessions, extra], before)
    nonce = rig.delivery(extra.id).nonce
    assert nonce == rig.chain.w3.eth.get_transaction_count(rig.chain.treasury_address) - 1


@pytest.mark.parametrize("delivery_settings", TREASURY)
# Also true of treasury_after_sign (the signed transfer stored, not broadcast); one point keeps the module short.
@pytest.mark.parametrize("point", ["treasury_after_reserve"])
def test_a_point_in_time_restore_between_reserve_and_broadcast_pays_nobody_twice(
    rig: DeliveryRig, tmp_path: Path, point: str
) -> None:
    before = len(treasury_transfers(rig))
    first = [rig.paid_session(f"{10 + i}.25") for i in range(10)]
    deliver(rig)
    # `musdpay deliver` runs on the real clock: the rest become due by it, whatever rounds moved the rig's clock.
    rig.clock.now = min(rig.clock.now, datetime.now(UTC))
    rest = [rig.paid_session(f"{30 + i}.5") for i in range(10)]
    # The recovery point: `musdpay deliver` dies right after the database reserved a nonce (or stored the signed
    # transfer), before anything was broadcast.
    crashing = start_worker(rig, tmp_path, "crashing", MUSDPAY_CRASH_POINTS=point)
    try:
        wait_until(lambda: not crashing.alive(), timeout=30, what=f"the worker to die at {point}")
    finally:
        crashing.kill()
    assert count_deliveries(rig, Delivery.nonce.is_not(None), Delivery.status == DeliveryStatus.pending.value) == 1
    backup = snapshot(rig, tmp_path / "pitr")
    deliver(rig)  # history goes on: the reserved transfer is sent and mined, and the other nine
    sessions = [*first, *rest]
    assert_paid_once(rig, sessions, before)

    restore(rig, backup)  # back to the reserved-but-unsent moment, while its transfer is on chain
    worker = start_worker(rig, tmp_path, "after-restore")
    try:
        wait_until(
            lambda: count_deliveries(rig, Delivery.status == DeliveryStatus.verified.value) == 20,
            timeout=30,
            what="every delivery verified after the point-in-time restore",
        )
    finally:
        assert worker.stop() == 0, worker.log()
    assert "delivery recovery finished" in worker.log()
    assert_paid_once(rig, sessions, before)


@pytest.mark.parametrize("delivery_settings", TREASURY)
def test_a_treasury_transfer_nothing_names_is_a_discrepancy_and_an_unexplained_outflow(rig: DeliveryRig) -> None:
    before = len(treasury_transfers(rig))
    paid = rig.paid_session("3")
    deliver(rig)
    # The key used outside musdpay: a transfer without a session reference, then a delivery is due.
    stranger = new_wallet()
    rig.chain.transfer_musd(stranger, units("7"))
    session = rig.paid_session("4")
    deliver(rig)
    assert rig.metric("musdpay_delivery_recovery_discrepancies_total", kind="no_reference") == 1
    assert_paid_once(rig, [paid, session], before + 1)  # and the stranger's transfer
    # The ledger check still reports that outflow (and only it) as unexplained.
    context = build_context(
        rig.settings,
        factory=rig.factory,
        run_db=lambda fn, **kw: _sync(fn, **kw),
        fetch_stripe_session=lambda _id: pytest.fail("no purchase to compare with Stripe"),
        chain=rig.client,
        metrics=rig.telemetry.metrics,
        clock=rig.clock,
    )
    report = rig.run(check_ledgers(context, since=rig.clock(), until=rig.clock()))
    unexplained = [f for f in report.findings if f.kind is Kind.unexplained_outflow]
    [stranger_tx] = [t["tx"] for t in treasury_transfers(rig) if t["to"] == stranger]
    assert [f.subject for f in unexplained] == [stranger_tx.lower()]


async def _sync(fn: Any, **kwargs: Any) -> Any:
    return fn(**kwargs)
