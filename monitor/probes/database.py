"""Probing the payment database (and its replica): can a client connect and query, and how full is it.

Every run opens a new connection (its time is the connect latency), runs `SELECT 1` (the query latency), then
reads what applies to the backend:

| | PostgreSQL | SQLite |
|---|---|---|
| size | `pg_database_size` | page_count x page_size |
| connections by state, max_connections, used ratio (saturation) | `pg_stat_activity` | - |
| oldest open transaction | `now() - min(xact_start)` of other backends | - |
| replication lag (replica only) | `clock_timestamp() - pg_last_xact_replay_timestamp()`, 0 once replay caught up | - |
| migrations at head (primary only) | alembic revision against the code's head | same |
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from monitor.config import DatabaseConfig
from monitor.db import DbRunner, is_sqlite
from monitor.metrics import MonitorMetrics
from monitor.scheduler import ProbeFailed, ProbeJob
from payment.core.metrics import LabelSets
from payment.core.migrations import head_revision

__all__ = ["ERROR_KINDS", "REPLICA_ERROR_KINDS", "DatabaseProbe", "metric_labels"]

CONNECT, QUERY, TIMEOUT, NOT_A_REPLICA = "connect", "query", "timeout", "not_a_replica"
ERROR_KINDS = (CONNECT, QUERY, TIMEOUT)  # how a probe fails (`musdpay_monitor_db_errors_total`)
REPLICA_ERROR_KINDS = (*ERROR_KINDS, NOT_A_REPLICA)  # and a replica's, which may have been promoted


def metric_labels(target: str, *, replica: bool) -> LabelSets:
    """The database probe's series of one target, for `MonitorMetrics.initialise`."""
    return {
        "db_errors": [(target, kind) for kind in (REPLICA_ERROR_KINDS if replica else ERROR_KINDS)],
        "db_connect_duration": [(target,)],
        "db_query_duration": [(target,)],
    }


_STATES = ("active", "idle", "idle in transaction", "idle in transaction (aborted)", "fastpath function call")


class _Failure(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class DatabaseProbe:
    target: str  # primary | replica
    engine: Engine  # unpooled: every connect is a real one
    runner: DbRunner
    config: DatabaseConfig
    metrics: MonitorMetrics
    replica: bool = False

    def __post_init__(self) -> None:
        m, t = self.metrics, self.target
        m.db_up.labels(t)
        for kind in REPLICA_ERROR_KINDS if self.replica else ERROR_KINDS:
            m.db_errors.labels(t, kind)

    def job(self) -> ProbeJob:
        return ProbeJob("database", self.target, self.config, self.probe)

    async def probe(self) -> None:
        m, t = self.metrics, self.target
        try:
            async with asyncio.timeout(self.config.timeout * 0.9):
                await self.runner.run(self._measure)
            return
        except TimeoutError:
            kind = TIMEOUT
        except _Failure as exc:
            kind = exc.kind
        m.db_errors.labels(t, kind).inc()
        m.db_up.labels(t).set(0)
        raise ProbeFailed(kind)

    def _measure(self) -> None:
        m, t = self.metrics, self.target
        started = time.perf_counter()
        try:
            connection = self.engine.connect()
        except SQLAlchemyError:
            raise _Failure(CONNECT) from None
        try:
            connected = time.perf_counter()
            try:
                connection.exec_driver_sql("SELECT 1").scalar_one()
            except SQLAlchemyError:
                raise _Failure(QUERY) from None
            m.db_connect_duration.labels(t).observe(connected - started)
            m.db_query_duration.labels(t).observe(time.perf_counter() - connected)
            m.db_up.labels(t).set(1)
            try:
                if is_sqlite(self.engine):
                    self._sqlite_stats(connection)
                else:
                    self._postgres_stats(connection)
                if not self.replica:
                    current = MigrationContext.configure(connection).get_current_revision()
                    m.db_migrations_at_head.labels(t).set(1 if current == head_revision() else 0)
            except SQLAlchemyError:
                raise _Failure(QUERY) from None
        finally:
            connection.close()

    def _sqlite_stats(self, connection: Connection) -> None:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
        size = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
        self.metrics.db_size.labels(self.target).set(int(pages) * int(size))

    def _postgres_stats(self, connection: Connection) -> None:
        m, t = self.metrics, self.target
        size = connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        m.db_size.labels(t).set(int(size))
        counts = dict.fromkeys(_STATES, 0)
        rows = connection.execute(
            text(
                "SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' GROUP BY 1"
            )
        ).all()
        for state, count in rows:
            counts[str(state)] = int(count)
        for state, count in counts.items():
            m.db_connections.labels(t, state).set(count)
        maximum = int(connection.execute(text("SELECT current_setting('max_connections')::int")).scalar_one())
        m.db_max_connections.labels(t).set(maximum)
        m.db_connections_ratio.labels(t).set(sum(counts.values()) / maximum if maximum else 0.0)
        oldest = connection.execute(
            text(
                "SELECT coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0) FROM pg_stat_activity "
                "WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
        m.db_oldest_transaction.labels(t).set(float(oldest))
        if self.replica:
            # Lag 0 when nothing received is left to replay, however old the last replayed commit (an idle primary):
            # replay LSN >= receive LSN, not `=`, since a restarted walreceiver reports the start of the WAL segment it
            # resumes from, behind what was already replayed. Otherwise the age of the last replayed commit, against
            # the clock now (`now()` is this transaction's start, older than a commit replayed since), never below 0
            # (two hosts' clocks); `greatest` skips NULL, so a replica that replayed no commit yet reports 0.
            lag = connection.execute(
                text(
                    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN NULL "
                    "WHEN pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() THEN 0 "
                    "ELSE greatest(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 0) END"
                )
            ).scalar_one()
            if lag is None:
                raise _Failure(NOT_A_REPLICA)
            m.db_replication_lag.labels(t).set(float(lag))
