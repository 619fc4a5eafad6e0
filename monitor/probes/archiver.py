"""Probing PostgreSQL's WAL archiving and the recoverability window of its archive (point-in-time recovery).

Each run reads, from the primary:
- `archive_mode` and `archive_command` (archiving enabled at all), `pg_stat_archiver` (archived_count,
  failed_count, last_archived_time, last_failed_time), and the WAL insert position (`pg_current_wal_lsn()`):
  when it moved since the previous run, WAL was written (the monitor's own reads write none);
and from the archive destination (payment.backup.pitr): the complete base backups (the end of the oldest is
the oldest recoverable point) and `wal-latest.json` (when the newest segment was archived: the newest point).

A failing archive_command keeps every segment on the primary's disk (pg_wal grows until it fills) and stops
the newest recoverable point: WalArchivingFailing and RecoveryWindowTooShort read these gauges.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from monitor.config import ArchiverConfig
from monitor.db import DbRunner, is_sqlite
from monitor.metrics import MonitorMetrics, remove_series
from monitor.scheduler import ProbeFailed, ProbeJob
from payment.backup.destinations import Destination, open_destination
from payment.backup.pitr import recovery_window

__all__ = ["ArchiverProbe"]

TARGET = "primary"


@dataclass
class ArchiverProbe:
    engine: Engine
    runner: DbRunner
    config: ArchiverConfig
    metrics: MonitorMetrics
    destination: Destination | None = None  # default: config.destination
    _last_lsn: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.destination is None:
            assert self.config.destination is not None  # ArchiverConfig refuses enabled without one
            self.destination = open_destination(self.config.destination, endpoint_url=self.config.s3_endpoint_url)

    def job(self) -> ProbeJob:
        return ProbeJob("archiver", TARGET, self.config, self.probe)

    async def probe(self) -> None:
        try:
            async with asyncio.timeout(self.config.timeout * 0.9):
                await self.runner.run(self._server)
                await self.runner.run(self._archive)
        except TimeoutError:
            raise ProbeFailed("timeout") from None

    def _server(self) -> None:
        m = self.metrics
        if is_sqlite(self.engine):
            raise ProbeFailed("not_postgresql")
        try:
            with self.engine.connect() as connection:
                mode, command = connection.execute(
                    text("SELECT current_setting('archive_mode'), current_setting('archive_command')")
                ).one()
                archived, failed, last_archived, last_failed, lsn = connection.execute(
                    text(
                        "SELECT archived_count, failed_count, extract(epoch FROM last_archived_time), "
                        "extract(epoch FROM last_failed_time), pg_current_wal_lsn() - '0/0'::pg_lsn "
                        "FROM pg_stat_archiver"
                    )
                ).one()
        except SQLAlchemyError:
            raise ProbeFailed("query") from None
        m.wal_archiving_enabled.labels(TARGET).set(1 if mode in {"on", "always"} and command.strip() else 0)
        m.wal_archived_segments.labels(TARGET).set(int(archived))
        m.wal_archive_failures.labels(TARGET).set(int(failed))
        if last_archived is not None:
            m.wal_last_archived.labels(TARGET).set(float(last_archived))
        m.wal_last_failed.labels(TARGET).set(float(last_failed) if last_failed is not None else 0.0)
        position = int(lsn)
        m.wal_written.labels(TARGET).set(position)
        if self._last_lsn is None:
            # Unknown before the first run: assume nothing was written after the last archived file.
            m.wal_last_write.labels(TARGET).set(float(last_archived) if last_archived is not None else 0.0)
        elif position > self._last_lsn:
            m.wal_last_write.labels(TARGET).set(time.time())
        self._last_lsn = position

    def _archive(self) -> None:
        m = self.metrics
        assert self.destination is not None
        try:
            window = recovery_window(self.destination)
        except Exception:  # any failure to read the archive (credentials, network, a malformed object)
            raise ProbeFailed("destination") from None
        m.recovery_base_backups.labels(TARGET).set(window.base_backups)
        if window.oldest is not None:
            m.recovery_oldest.labels(TARGET).set(window.oldest.timestamp())
        else:  # every base backup pruned or lost: no oldest point (RecoveryWindowTooShort reads the count)
            remove_series(m.recovery_oldest, TARGET)
        if window.newest is not None:
            m.recovery_newest.labels(TARGET).set(window.newest.timestamp())
