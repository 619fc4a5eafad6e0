"""The monitor's backup job: it backs up when due, verifies, publishes `musdpay_backup_*` on its /metrics, acts
one monitor at a time, and counts failures of backups and of verification."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.probes.backup import LOCK_KEY
from payment.backup.crypto import parse_key
from payment.backup.destinations import open_destination
from payment.backup.service import create_backup, list_backups
from payment.core.metrics_server import serve_metrics
from tests.monitor.conftest import Database
from tests.monitor.support import config_of, running_monitor, seed_session
from tests.support.backups import new_key

pytestmark = pytest.mark.integration

FAST = {"check_interval_seconds": 0.3, "jitter_seconds": 0.02, "timeout_seconds": 30, "interval_seconds": 3600}


def _config(database: Database, dest: Path, key: str, **backup: Any) -> Any:
    return config_of(
        {"database_url": database.url, "backup_encryption_key": key}, backup={"dest": str(dest), **FAST, **backup}
    )


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _backups(dest: Path, key: str) -> list[str]:
    return [item.id for item in list_backups(open_destination(str(dest)), parse_key(key)) if item.problem is None]


def test_the_job_backs_up_verifies_and_publishes_once_it_has_the_turn(database: Database, tmp_path: Path) -> None:
    seed_session(database.factory, status="fulfillment_complete")
    key, dest = new_key(), tmp_path / "backups"
    holder, holder_file = None, None
    if database.url.startswith("postgresql"):  # another monitor has the turn
        holder = psycopg.connect(database.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    else:
        holder_file = Path(database.url.removeprefix("sqlite:///") + ".backup-lock").open("a")  # noqa: SIM115
        fcntl.flock(holder_file.fileno(), fcntl.LOCK_EX)
    try:
        with running_monitor(_config(database, dest, key)) as running:
            server = serve_metrics(running.registry, "127.0.0.1", 0)
            try:
                lock_held = ("musdpay_backup_runs_total", (("database", "primary"), ("outcome", "lock_held")))
                running.wait(lambda: _scrape(server.url).get(lock_held, 0) >= 2, what="rounds without the turn")
                assert _backups(dest, key) == []
                assert running.value("musdpay_backup_last_success_timestamp_seconds", database="primary") is None
                if holder is not None:
                    holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
                elif holder_file is not None:
                    holder_file.close()  # releases the flock
                verified = ("musdpay_backup_last_verify_success_timestamp_seconds", (("database", "primary"),))
                samples = running.wait(
                    lambda: (s := _scrape(server.url)).get(verified) and s, timeout=30, what="a verified backup"
                )
                running.wait_runs("backup", "primary", 2, outcome="success")
                samples = _scrape(server.url)
            finally:
                server.close()
    finally:
        if holder is not None:
            holder.close()
        elif holder_file is not None and not holder_file.closed:
            holder_file.close()
    [backup_id] = _backups(dest, key)  # one backup: the later rounds found it fresh
    [listed] = list_backups(open_destination(str(dest)), parse_key(key))
    assert listed.manifest is not None
    assert listed.verified_at is not None
    primary = (("database", "primary"),)
    assert samples[("musdpay_backup_last_success_timestamp_seconds", primary)] == listed.manifest.created.timestamp()
    assert samples[("musdpay_backup_size_bytes", primary)] == listed.manifest.size_bytes
    assert samples[("musdpay_backup_duration_seconds", primary)] == listed.manifest.duration_seconds
    assert samples[("musdpay_backup_stored_backups", primary)] == 1
    assert samples[verified] == listed.verified_at.timestamp()
    assert samples[("musdpay_backup_runs_total", (*primary, ("outcome", "created")))] == 1
    assert samples[("musdpay_backup_runs_total", (*primary, ("outcome", "not_due")))] >= 1
    assert samples[("musdpay_backup_failures_total", primary)] == 0
    assert samples[("musdpay_backup_verify_failures_total", primary)] == 0
    assert backup_id == listed.id


def test_two_monitors_make_one_backup(database: Database, tmp_path: Path) -> None:
    seed_session(database.factory, status="fulfillment_complete")
    key, dest = new_key(), tmp_path / "backups"
    config = _config(database, dest, key)
    with running_monitor(config) as first, running_monitor(config) as second:
        first.wait(lambda: _backups(dest, key), timeout=30, what="a backup")
        for running in (first, second):
            running.wait_runs("backup", "primary", 3, outcome="success")
    assert len(_backups(dest, key)) == 1
    created = [r.count("musdpay_backup_runs_total", database="primary", outcome="created") for r in (first, second)]
    assert sorted(created) == [0, 1]
    last = {r.value("musdpay_backup_last_success_timestamp_seconds", database="primary") for r in (first, second)}
    assert len(last) == 1  # both publish the destination's newest backup


def test_failed_backups_and_verifications_are_counted(sqlite_database: Database, tmp_path: Path) -> None:
    key, dest = new_key(), tmp_path / "backups"
    made = create_backup(sqlite_database.url, open_destination(str(dest)), parse_key(key))
    sealed = dest / made.file
    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 0x01
    sealed.write_bytes(bytes(data))
    # A fresh (so not due) but tampered backup: verification fails, round after round.
    with running_monitor(_config(sqlite_database, dest, key)) as running:
        running.wait(lambda: running.count("musdpay_backup_verify_failures_total", database="primary") >= 2)
        assert running.runs("backup", "primary", "failure") >= 2
        assert running.value("musdpay_backup_last_verify_success_timestamp_seconds", database="primary") is None
        assert running.value("musdpay_backup_last_success_timestamp_seconds", database="primary") == (
            made.created.timestamp()
        )
        assert running.count("musdpay_backup_failures_total", database="primary") == 0

    # A destination that cannot be written: the backup fails, is counted, and nothing claims success.
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    with running_monitor(_config(sqlite_database, blocked, key)) as running:
        running.wait(lambda: running.count("musdpay_backup_failures_total", database="primary") >= 2)
        assert running.value("musdpay_backup_last_success_timestamp_seconds", database="primary") is None
        assert running.count("musdpay_backup_runs_total", database="primary", outcome="created") == 0
    assert os.path.isfile(blocked)
