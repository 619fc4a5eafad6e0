"""Database probes: SQLite's subset, PostgreSQL's statistics, and a PostgreSQL stopped and restarted mid-run."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from payment.core import migrations
from payment.core.config import Settings
from payment.core.db import create_db_engine
from tests.monitor.conftest import Chain, Database
from tests.monitor.pgcluster import own_postgres
from tests.monitor.support import config_of, running_monitor
from tests.support.services import temporary_postgres_database

pytestmark = pytest.mark.integration

DATABASE = {"interval_seconds": 0.2, "timeout_seconds": 3.0}


def test_sqlite_reports_the_subset_that_applies(sqlite_database: Database) -> None:
    with running_monitor(config_of({"database_url": sqlite_database.url}, database=DATABASE)) as running:
        running.wait_runs("database", "primary", 2, outcome="success")
        assert running.value("musdpay_monitor_db_up", database="primary") == 1
        assert (running.value("musdpay_monitor_db_size_bytes", database="primary") or 0) > 4096
        assert running.value("musdpay_monitor_db_migrations_at_head", database="primary") == 1
        assert running.count("musdpay_monitor_db_connect_duration_seconds_count", database="primary") >= 2
        assert running.count("musdpay_monitor_db_query_duration_seconds_count", database="primary") >= 2
        assert running.value("musdpay_monitor_db_max_connections", database="primary") is None  # PostgreSQL only


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with temporary_postgres_database() as url:
        yield url


def test_postgresql_statistics_transactions_and_migrations(postgres_url: str) -> None:
    with running_monitor(config_of({"database_url": postgres_url}, database=DATABASE)) as running:
        running.wait_runs("database", "primary", 1, outcome="success")
        assert running.value("musdpay_monitor_db_migrations_at_head", database="primary") == 0  # empty database
        assert (running.value("musdpay_monitor_db_max_connections", database="primary") or 0) >= 10
        assert (running.value("musdpay_monitor_db_connections_used_ratio", database="primary") or 0) > 0
        assert (running.value("musdpay_monitor_db_size_bytes", database="primary") or 0) > 1_000_000

        engine = create_db_engine(Settings(database_url=postgres_url))
        try:
            migrations.upgrade(engine)
        finally:
            engine.dispose()
        running.wait(lambda: running.value("musdpay_monitor_db_migrations_at_head", database="primary") == 1)

        # A transaction left open (a stuck request, a forgotten psql) shows its age.
        dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as held:
            held.execute("SELECT 1")  # opens the transaction (psycopg is not in autocommit)
            opened = time.monotonic()
            running.wait(
                lambda: (
                    (running.value("musdpay_monitor_db_oldest_transaction_seconds", database="primary") or 0) >= 0.5
                ),
                what="the open transaction's age",
            )
            assert (running.value("musdpay_monitor_db_oldest_transaction_seconds", database="primary") or 0) <= (
                time.monotonic() - opened + 1
            )
            assert (
                running.value("musdpay_monitor_db_connections", database="primary", state="idle in transaction") or 0
            ) >= 1
            held.rollback()


def test_a_stopped_database_is_reported_and_the_monitor_keeps_running(chain: Chain) -> None:
    with own_postgres() as server:
        engine = create_db_engine(Settings(database_url=server.url))
        try:
            migrations.upgrade(engine)
        finally:
            engine.dispose()
        settings = {**chain.settings(), "database_url": server.url}
        config = config_of(settings, database=DATABASE, pipeline={}, rpc={"timeout_seconds": 1.0})
        with running_monitor(config) as running:
            running.wait_runs("database", "primary", 1, outcome="success")
            running.wait_runs("pipeline", "database", 1, outcome="success")
            assert running.value("musdpay_monitor_db_up", database="primary") == 1

            server.stop()
            stopped = time.monotonic()
            running.wait(lambda: running.value("musdpay_monitor_db_up", database="primary") == 0, what="db down")
            assert time.monotonic() - stopped <= 2 * 0.2 + 3.0  # two intervals, plus a connect attempt under load
            running.wait(
                lambda: running.count("musdpay_monitor_db_errors_total", database="primary", kind="connect") >= 2
            )
            running.wait_runs("pipeline", "database", 2, outcome="failure")
            assert running.value("musdpay_monitor_probe_success", probe="database", target="primary") == 0
            running.wait_runs("rpc", "spectrum", 3, outcome="success")  # other jobs are not held up

            server.start()
            running.wait(lambda: running.value("musdpay_monitor_db_up", database="primary") == 1, what="db back")
            running.wait_runs("pipeline", "database", 1, outcome="success")
            # The first run after the restart may still meet the server starting up; a later one succeeds.
            running.wait(
                lambda: running.value("musdpay_monitor_probe_success", probe="database", target="primary") == 1,
                what="a successful database probe after the restart",
            )
