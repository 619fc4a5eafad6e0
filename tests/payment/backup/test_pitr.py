"""Point-in-time recovery end to end on a private cluster: WAL archived to a directory and to a real S3 server
(moto), a base backup, rows before and after a target time, the cluster destroyed, a restore to the target;
the archive command's refusal to overwrite; the monitor's archiver probe, healthy and failing."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from monitor.config import ArchiverConfig
from monitor.db import DbRunner, read_engine
from monitor.metrics import MonitorMetrics
from monitor.probes.archiver import ArchiverProbe
from monitor.scheduler import ProbeFailed
from tests.support.pgpitr import (
    PitrCluster,
    pg_bindir,
    pitr_cluster,
    server_directory,
    server_musdpay_command,
    server_user,
)
from tests.support.s3 import running_s3
from tests.support.services import require
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

MUSDPAY = [sys.executable, "-m", "musdpay"]
BATCH = 5000  # rows before the target, and as many after: ~10k in all


@dataclass
class Archive:
    dest: str
    endpoint_url: str | None

    def flags(self) -> list[str]:
        return ["--dest", self.dest, *(["--s3-endpoint-url", self.endpoint_url] if self.endpoint_url else [])]


def _musdpay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MUSDPAY, *args], capture_output=True, text=True, timeout=120, check=False)


def _archive_settings(archive: Archive, prefix: str) -> dict[str, str]:
    """`musdpay pitr settings` parsed: what the runbook tells the operator to paste into postgresql.conf."""
    printed = _musdpay("pitr", "settings", *archive.flags(), "--archive-timeout", "1", "--command", prefix)
    assert printed.returncode == 0, printed.stderr
    return dict(line.split(" = ", 1) for line in printed.stdout.splitlines())


@pytest.fixture
def root() -> Path:
    require(pg_bindir() is not None, "PostgreSQL server binaries (initdb, pg_ctl) not installed")
    return server_directory()  # pitr_cluster removes it


@pytest.fixture(params=["directory", "s3"])
def archive(
    request: pytest.FixtureRequest, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Archive]:
    if request.param == "directory":
        yield Archive(str(root / "archive"), None)  # in the server user's directory: it writes there
        return
    with running_s3(tmp_path, monkeypatch) as s3:  # the credentials reach the server through its environment
        yield Archive(s3.url("pitr/primary"), s3.endpoint_url)


def _insert(conninfo: str, first: int, count: int) -> None:
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for start in range(first, first + count, 1000):  # one commit per 1000 rows, as a busy API would commit
            connection.execute(
                "INSERT INTO pitr_rows (id, note) SELECT g, 'row ' || g FROM generate_series(%s::int, %s::int) g",
                (start, min(start + 999, first + count - 1)),
            )


def _switch_and_wait_archived(conninfo: str) -> None:
    """Close the current segment and wait until the archiver stored it (the WAL after the target must be in the
    archive for recovery to find the first commit past it)."""
    with psycopg.connect(conninfo, autocommit=True) as connection:
        row = connection.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        segment = str(row[0])

        def archived() -> bool:
            done = connection.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            return done is not None and done[0] is not None and str(done[0])[:24] >= segment

        wait_until(archived, timeout=30, interval=0.1, what=f"segment {segment} archived")


def _probe(cluster: PitrCluster, archive: Archive) -> MonitorMetrics:
    metrics = MonitorMetrics(CollectorRegistry(), process_collectors=False)
    config = ArchiverConfig(
        enabled=True, interval_seconds=10, destination=archive.dest, s3_endpoint_url=archive.endpoint_url
    )
    engine, runner = read_engine(cluster.url, timeout=5, pooled=False), DbRunner()
    try:
        asyncio.run(ArchiverProbe(engine, runner, config, metrics).probe())
    finally:
        runner.close()
        engine.dispose()
    return metrics


def _value(metrics: MonitorMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(f"musdpay_monitor_{name}", {"database": "primary"})
    assert value is not None, f"musdpay_monitor_{name} not set"
    return value


def test_restore_to_a_target_time_keeps_every_row_before_it_and_none_after(root: Path, archive: Archive) -> None:
    prefix = server_musdpay_command()
    with pitr_cluster(root, wal_segsize_mb=1, extra=_archive_settings(archive, prefix)) as cluster:
        with psycopg.connect(cluster.conninfo, autocommit=True) as connection:
            connection.execute("CREATE TABLE pitr_rows (id int PRIMARY KEY, note text NOT NULL)")
        backup = _musdpay("pitr", "base-backup", *archive.flags(), "--database-url", cluster.url)
        assert backup.returncode == 0, backup.stderr
        backup_id = backup.stdout.strip().splitlines()[-1]

        _insert(cluster.conninfo, 1, BATCH)
        target = datetime.now(UTC)
        wait_until(lambda: datetime.now(UTC) > target + timedelta(milliseconds=20), what="the clock past the target")
        _insert(cluster.conninfo, BATCH + 1, BATCH)
        _switch_and_wait_archived(cluster.conninfo)

        # The monitor sees a healthy archiver and the window: from the base backup's end to the last archive.
        metrics = _probe(cluster, archive)
        assert _value(metrics, "wal_archiving_enabled") == 1
        assert _value(metrics, "wal_archived_segments") >= 2
        assert _value(metrics, "wal_archive_failures") == 0
        assert _value(metrics, "recovery_base_backups") == 1
        oldest, newest = (
            _value(metrics, "recovery_window_oldest_timestamp_seconds"),
            _value(metrics, "recovery_window_newest_timestamp_seconds"),
        )
        assert oldest < target.timestamp() < newest

        cluster.destroy()
        restored = cluster.sibling("restored")
        laid_out = _musdpay(
            "pitr", "restore", *archive.flags(), "--pgdata", str(restored.data),
            "--target-time", target.isoformat(), "--command", prefix,
        )  # fmt: skip
        assert laid_out.returncode == 0, laid_out.stderr
        assert backup_id in laid_out.stdout
        restored.chown(restored.data)
        restored.start()
        restored.wait_promoted(timeout=60)
        with psycopg.connect(restored.conninfo) as connection:
            ids = {int(row[0]) for row in connection.execute("SELECT id FROM pitr_rows")}
        assert ids == set(range(1, BATCH + 1)), (
            f"{len(set(range(1, BATCH + 1)) - ids)} rows before the target lost, "
            f"{len(ids - set(range(1, BATCH + 1)))} rows after it restored"
        )


def test_archive_command_refuses_to_overwrite_a_different_segment(tmp_path: Path) -> None:
    dest = str(tmp_path / "archive")
    name = "000000010000000000000007"
    segment, other = tmp_path / "segment", tmp_path / "other"
    segment.write_bytes(os.urandom(4096))
    other.write_bytes(os.urandom(4096))
    first = _musdpay("pitr", "archive-wal", str(segment), name, "--dest", dest)
    assert first.returncode == 0, first.stderr
    again = _musdpay("pitr", "archive-wal", str(segment), name, "--dest", dest)
    assert again.returncode == 0, again.stderr  # the same file again (a retry after a crash) succeeds
    refused = _musdpay("pitr", "archive-wal", str(other), name, "--dest", dest)
    assert refused.returncode == 1
    assert "already exists with different content" in refused.stderr
    back = tmp_path / "back"
    assert _musdpay("pitr", "restore-wal", name, str(back), "--dest", dest).returncode == 0
    assert back.read_bytes() == segment.read_bytes()  # the original, untouched
    missing = _musdpay("pitr", "restore-wal", "000000010000000000000008", str(tmp_path / "none"), "--dest", dest)
    assert missing.returncode == 1
    assert _musdpay("pitr", "archive-wal", str(segment), "../etc/passwd", "--dest", dest).returncode == 1


def test_probe_reports_a_failing_archive_command(root: Path) -> None:
    unwritable = root / "unwritable"
    unwritable.mkdir()
    unwritable.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    if server_user() is not None:
        os.chown(unwritable, 0, 0)  # root's, read-only to the server's user
    archive = Archive(str(unwritable / "archive"), None)
    with pitr_cluster(root, wal_segsize_mb=1, extra=_archive_settings(archive, server_musdpay_command())) as cluster:
        with psycopg.connect(cluster.conninfo, autocommit=True) as connection:
            connection.execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n")
            connection.execute("SELECT pg_switch_wal()")

        def failing() -> MonitorMetrics | None:
            metrics = _probe(cluster, archive)
            return metrics if _value(metrics, "wal_archive_failures") > 0 else None

        found = wait_until(failing, timeout=30, interval=0.5, what="archive_command failures in pg_stat_archiver")
        assert found is not None
        metrics = found
        assert _value(metrics, "wal_last_failed_timestamp_seconds") > 0
        assert (
            metrics.registry.get_sample_value(
                "musdpay_monitor_wal_last_archived_timestamp_seconds", {"database": "primary"}
            )
            is None
        )  # nothing was ever archived
        assert _value(metrics, "recovery_base_backups") == 0


def test_probe_fails_on_sqlite(tmp_path: Path) -> None:
    metrics = MonitorMetrics(CollectorRegistry(), process_collectors=False)
    config = ArchiverConfig(enabled=True, destination=str(tmp_path))
    engine, runner = read_engine(f"sqlite:///{tmp_path / 'x.sqlite'}", timeout=5), DbRunner()
    try:
        with pytest.raises(ProbeFailed, match="not_postgresql"):
            asyncio.run(ArchiverProbe(engine, runner, config, metrics).probe())
    finally:
        runner.close()
        engine.dispose()
