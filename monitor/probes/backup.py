"""The scheduled backup: `musdpay backup create` when the newest backup is due, `prune` after it, and `verify`
of the newest backup when the last verification is due (docs/backups.md).

Every `check_interval_seconds` the job reads the destination: the newest complete backup's time, size and
duration, and the last successful verification, are what it publishes (`musdpay_backup_*`), so every monitor
exports them, a restarted monitor does not back up again, and DatabaseBackupStale reads the destination's truth
rather than one process's memory. Then, when a backup or a verification is due, it makes it.

Only one monitor acts at a time. On PostgreSQL each acting round holds a session-level advisory lock
(`pg_try_advisory_lock`, as monitor/probes/reverify.py), and re-reads the destination once it has the lock (so
the second of two monitors sees the first one's backup and does nothing); on SQLite, an exclusive `flock` on
`<database>.backup-lock` beside the file does the same for monitors of one host. A monitor without the lock
counts `lock_held`. A round that outlives its timeout keeps its thread (and the lock) until it ends; the next
rounds of this monitor skip meanwhile.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from monitor.config import BackupConfig, ConfigError
from monitor.db import DbRunner
from monitor.metrics import MonitorMetrics
from monitor.scheduler import ProbeFailed, ProbeJob
from payment.backup.crypto import BackupKey, parse_key
from payment.backup.destinations import Destination, open_destination
from payment.backup.errors import BackupError
from payment.backup.service import Listed, create_backup, database_kind, list_backups, prune_backups, verify_backup
from payment.backup.sqlite import database_path
from payment.core.config import Settings
from payment.core.metrics import LabelSets

__all__ = ["DATABASE", "LOCK_KEY", "OUTCOMES", "BackupJob", "Round", "backup_round", "metric_labels"]

log = logging.getLogger(__name__)

DATABASE = "primary"  # the `database` label DatabaseBackupStale groups by
CREATED, NOT_DUE, LOCK_HELD = "created", "not_due", "lock_held"
OUTCOMES = (CREATED, NOT_DUE, LOCK_HELD)  # of a round (`musdpay_backup_runs_total`)
# The job's PostgreSQL advisory lock key (a fixed bigint no other code of this database uses).
LOCK_KEY = 0x2B4C_6D8E_0A1B_3C5D


def metric_labels() -> LabelSets:
    """The backup job's series, for `MonitorMetrics.initialise`."""
    return {
        "backup_runs": [(DATABASE, outcome) for outcome in OUTCOMES],
        "backup_failures": [(DATABASE,)],
        "backup_verify_failures": [(DATABASE,)],
        "backup_pruned": [(DATABASE,)],
    }


@dataclass
class Round:
    """What one round saw and did."""

    outcome: str
    listed: list[Listed] = field(default_factory=list)
    pruned: int = 0
    backup_error: str | None = None
    verify_error: str | None = None

    @property
    def good(self) -> list[Listed]:
        return [item for item in self.listed if item.manifest is not None and item.problem is None]


@contextmanager
def _turn(database_url: str) -> Iterator[bool]:
    """Whether this monitor has the backup turn, held for the block."""
    if database_kind(database_url) == "sqlite":
        lock_path = Path(f"{database_path(database_url)}.backup-lock")
        with lock_path.open("a") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return
    url = make_url(database_url).set(drivername="postgresql+psycopg")
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as connection:
            got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar_one())
            connection.commit()  # the lock is the session's, not the transaction's
            try:
                yield got
            finally:
                if got:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                    connection.commit()
    finally:
        engine.dispose()


def _age(listed: list[Listed], now: datetime) -> tuple[float | None, float | None]:
    """Seconds since the newest good backup, and since the last successful verification (None: never)."""
    good = [item for item in listed if item.manifest is not None and item.problem is None]
    newest = max((item.manifest.created for item in good if item.manifest is not None), default=None)
    verified = max((item.verified_at for item in good if item.verified_at is not None), default=None)
    return (
        None if newest is None else (now - newest).total_seconds(),
        None if verified is None else (now - verified).total_seconds(),
    )


def backup_round(
    settings: Settings, config: BackupConfig, destination: Destination, key: BackupKey, *, now: datetime
) -> Round:
    """Look at the destination; with the turn, back up, prune and verify what is due."""
    with _turn(settings.database_url) as mine:
        if not mine:
            return Round(LOCK_HELD, list_backups(destination, key))
        listed = list_backups(destination, key)  # read again under the lock: another monitor may have acted
        result = Round(NOT_DUE, listed)
        backup_age, _ = _age(listed, now)
        if backup_age is None or backup_age >= config.interval_seconds:
            try:
                create_backup(settings.database_url, destination, key)
                result.outcome = CREATED
                pruned = prune_backups(
                    destination,
                    key,
                    keep_daily=settings.backup_keep_daily if config.keep_daily is None else config.keep_daily,
                    keep_monthly=settings.backup_keep_monthly if config.keep_monthly is None else config.keep_monthly,
                )
                result.pruned = len(pruned.deleted)
            except Exception as exc:  # reported, counted and retried at the next check
                result.backup_error = _describe(exc)
            result.listed = list_backups(destination, key)
        _, verify_age = _age(result.listed, now)
        good = result.good
        if good and (verify_age is None or verify_age >= config.verify_interval_seconds):
            newest = max(good, key=lambda item: item.id)
            try:
                verify_backup(newest.id, destination, key, database_url=settings.database_url)
            except Exception as exc:
                result.verify_error = _describe(exc)
            result.listed = list_backups(destination, key)
        return result


def _describe(exc: Exception) -> str:
    if isinstance(exc, BackupError):
        return str(exc)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


@dataclass
class BackupJob:
    settings: Settings
    config: BackupConfig
    runner: DbRunner
    metrics: MonitorMetrics
    destination: Destination
    key: BackupKey
    _busy: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings, config: BackupConfig, runner: DbRunner, metrics: MonitorMetrics) -> BackupJob:
        if settings.backup_encryption_key is None:
            raise ConfigError("backup.enabled needs the backup key: MUSDPAY_BACKUP_ENCRYPTION_KEY (or its _FILE)")
        try:
            key = parse_key(settings.backup_encryption_key.get_secret_value())
            database_kind(settings.database_url)
            destination = open_destination(config.dest, endpoint_url=settings.backup_s3_endpoint_url or None)
        except Exception as exc:
            raise ConfigError(f"backup: {exc}") from None
        return cls(settings, config, runner, metrics, destination, key)

    def job(self) -> ProbeJob:
        return ProbeJob("backup", DATABASE, self.config.schedule(), self.run)

    def _round(self) -> Round | None:
        if not self._busy.acquire(blocking=False):  # a round that timed out is still going
            return None
        try:
            return backup_round(self.settings, self.config, self.destination, self.key, now=datetime.now(UTC))
        finally:
            self._busy.release()

    async def run(self) -> None:
        result = await self.runner.run(self._round)
        m = self.metrics
        if result is None:
            m.backup_runs.labels(DATABASE, LOCK_HELD).inc()
            return
        m.backup_runs.labels(DATABASE, result.outcome).inc()
        m.backup_pruned.labels(DATABASE).inc(result.pruned)
        good = result.good
        m.backup_count.labels(DATABASE).set(len(good))
        if good:
            newest = max(good, key=lambda item: item.id)
            assert newest.manifest is not None
            m.backup_last_success.labels(DATABASE).set(newest.manifest.created.timestamp())
            m.backup_size.labels(DATABASE).set(newest.manifest.size_bytes)
            m.backup_duration.labels(DATABASE).set(newest.manifest.duration_seconds)
        verified = [item.verified_at for item in good if item.verified_at is not None]
        if verified:
            m.backup_verify_last_success.labels(DATABASE).set(max(verified).timestamp())
        if result.backup_error is not None:
            m.backup_failures.labels(DATABASE).inc()
            log.error("backup failed: %s", result.backup_error, extra={"probe": "backup"})
        if result.verify_error is not None:
            m.backup_verify_failures.labels(DATABASE).inc()
            log.error("backup verification failed: %s", result.verify_error, extra={"probe": "backup"})
        if result.backup_error is not None:
            raise ProbeFailed("backup_failed")
        if result.verify_error is not None:
            raise ProbeFailed("verify_failed")
