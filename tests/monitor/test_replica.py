"""The replica probe against a real streaming replica: a primary the test starts itself, a `pg_basebackup -R` of it
streaming on another port, and the replication lag the monitor reports while replay runs, idles, pauses and resumes.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.monitor.pgcluster import PgCluster, own_postgres
from tests.monitor.support import RunningMonitor, config_of, running_monitor
from tests.support.services import free_port, require

pytestmark = pytest.mark.integration

DATABASE = {"interval_seconds": 0.2, "timeout_seconds": 3.0}
LAG = "musdpay_monitor_db_replication_lag_seconds"


def _dsn(cluster: PgCluster) -> str:
    return cluster.url.replace("postgresql+psycopg://", "postgresql://", 1)


def _server_command(cluster: PgCluster, *args: str) -> list[str]:
    command = [str(cluster.bindir / args[0]), *args[1:]]
    return ["runuser", "-u", cluster.user, "--", *command] if cluster.user is not None else command


@contextmanager
def streaming_replica(primary: PgCluster) -> Iterator[PgCluster]:
    """A `pg_basebackup -R` of `primary` in a temporary directory, started as a streaming standby on a free port."""
    # The primary's binaries may be symlinks on the PATH (to initdb and pg_ctl only): look beside their targets.
    bindir = (primary.bindir / "initdb").resolve().parent
    require((bindir / "pg_basebackup").exists(), f"pg_basebackup not installed beside initdb in {bindir}")
    root = Path(tempfile.mkdtemp(prefix="musdpay-pg-replica-"))
    try:
        replica = PgCluster(bindir, root / "data", root / "server.log", free_port(), primary.user)
        replica.log.touch()
        if primary.user is not None:
            entry = pwd.getpwnam(primary.user)
            for path in (root, replica.log):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        backup = subprocess.run(
            _server_command(
                replica, "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                "-D", str(replica.data), "-R", "-X", "stream", "-c", "fast", "--no-sync",
            ),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert backup.returncode == 0, f"pg_basebackup failed:\n{backup.stdout}{backup.stderr}"
        try:
            replica.start()
            yield replica
        finally:
            subprocess.run(
                _server_command(replica, "pg_ctl", "-D", str(replica.data), "-m", "immediate", "-w", "stop"),
                capture_output=True,
                timeout=60,
                check=False,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _scalar(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(query).fetchone()
        return row[0] if row is not None else None  # no row: a view that is empty yet (pg_stat_wal_receiver)


_LAST_COMMIT_AGE = "SELECT extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())"
_IDLE_FOR = (
    "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() "
    "THEN extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) ELSE 0 END"
)


def _lag(running: RunningMonitor) -> float | None:
    return running.value(LAG, database="replica")


def test_replica_lag_while_streaming_idle_paused_and_resumed() -> None:
    with own_postgres() as primary, streaming_replica(primary) as replica:
        primary_dsn, replica_dsn = _dsn(primary), _dsn(replica)
        with psycopg.connect(primary_dsn, autocommit=True) as writer:
            # No autovacuum: the primary stays idle (no WAL) when the test wants it idle.
            writer.execute("CREATE TABLE ticks (n int PRIMARY KEY) WITH (autovacuum_enabled = off)")
            writer.execute("CREATE TABLE filler (pad text) WITH (autovacuum_enabled = off)")
            config = config_of({"database_url": primary.url}, database={**DATABASE, "replica_url": replica.url})
            with running_monitor(config) as running:
                running.wait(
                    lambda: _scalar(primary_dsn, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"),
                    what="the replica streaming from the primary",
                )
                running.wait_runs("database", "replica", 1, outcome="success")
                assert running.value("musdpay_monitor_db_up", database="replica") == 1
                assert _lag(running) is not None

                # Streaming, the primary writing all the time (commits replayed while the probe runs, WAL in flight
                # when it reads): every lag reported is small and never negative.
                samples: list[float] = []
                runs = running.runs("database", "replica")
                n = 0
                while running.runs("database", "replica") < runs + 8:
                    n += 1
                    writer.execute(
                        "INSERT INTO filler SELECT repeat(md5(random()::text), 50) FROM generate_series(1, 50)"
                    )
                    writer.execute("INSERT INTO ticks (n) VALUES (%s)", (n,))
                    lag = _lag(running)
                    if lag is not None:
                        samples.append(lag)
                running.wait(
                    lambda: _scalar(replica_dsn, "SELECT max(n) FROM ticks") == n,
                    what="the last write replayed on the replica",
                )
                assert samples
                assert all(0 <= lag < 1.0 for lag in samples), sorted(set(samples))
                last_write = time.monotonic()

                # Idle and caught up: the last replayed commit grows old, yet nothing is behind, so the lag is 0
                # (receive LSN == replay LSN), not the age of that commit.
                running.wait(
                    lambda: _scalar(replica_dsn, _IDLE_FOR) > 1.5,
                    what="the replica's last replayed commit 1.5 s old",
                )
                running.wait_runs("database", "replica", 2, outcome="success")
                assert _lag(running) == 0

                # The replica restarted, the primary still idle: its walreceiver resumes from the start of a WAL
                # segment, so the receive LSN is behind the replay LSN. Nothing is missing: still 0.
                idle_lsn = _scalar(primary_dsn, "SELECT pg_current_wal_lsn()")
                replica.stop()
                replica.start()
                running.wait(
                    lambda: _scalar(replica_dsn, "SELECT status FROM pg_stat_wal_receiver") == "streaming",
                    what="the restarted replica streaming again",
                )
                running.wait_runs("database", "replica", 3, outcome="success")
                assert _lag(running) == 0
                assert _scalar(replica_dsn, _LAST_COMMIT_AGE) > 1.5  # what a lag from the last commit would say
                if _scalar(primary_dsn, "SELECT pg_current_wal_lsn()") == idle_lsn:  # no background WAL came by
                    assert _scalar(replica_dsn, "SELECT pg_last_wal_receive_lsn() < pg_last_wal_replay_lsn()")

                # Replay paused, the primary writes: the replica receives but does not apply, and the lag grows.
                _scalar(replica_dsn, "SELECT pg_wal_replay_pause()")
                running.wait(
                    lambda: _scalar(replica_dsn, "SELECT pg_get_wal_replay_pause_state()") == "paused",
                    what="replay paused",
                )
                writer.execute("INSERT INTO ticks (n) VALUES (%s)", (n + 1,))
                first = running.wait(lambda: _lag(running), what="a lag while replay is paused")
                grown = running.wait(
                    lambda: (lag := _lag(running) or 0) >= first + 1.0 and lag,
                    what=f"the lag growing past {first + 1.0:.2f}s",
                )
                # At most the age of the newest commit the replica applied (the last streaming write).
                assert grown <= time.monotonic() - last_write + 0.5
                assert _scalar(replica_dsn, "SELECT max(n) FROM ticks") == n  # the new write not applied

                # Replay resumed: the replica catches up and the lag falls back to 0.
                _scalar(replica_dsn, "SELECT pg_wal_replay_resume()")
                running.wait(lambda: _lag(running) == 0, what="the lag back to 0 after replay resumed")
                assert _scalar(replica_dsn, "SELECT max(n) FROM ticks") == n + 1
                running.wait_runs("database", "replica", 2, outcome="success")
                assert _lag(running) == 0
                assert running.count("musdpay_monitor_db_errors_total", database="replica", kind="query") == 0
