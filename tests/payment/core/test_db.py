"""Column types and migrations on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session, sessionmaker

from payment.core import migrations
from payment.core.db import Base, create_db_engine
from payment.onramp.models import OnrampSession
from tests.payment.conftest import make_settings, seed_session
from tests.support.services import musdpay_command, start_process


@pytest.mark.parametrize("amount", ["0.01", "9999.99", "12345678901234567890.123456789012345678", "98.49", "1"])
def test_amounts_come_back_exactly_as_stored(factory: sessionmaker[Session], amount: str) -> None:
    row = seed_session(factory, destination_amount=Decimal(amount))
    with factory() as db:
        stored = db.get(OnrampSession, row.id)
        assert stored is not None
        assert stored.destination_amount == Decimal(amount)
        assert str(stored.destination_amount) == amount


def test_floats_are_refused_as_amounts(factory: sessionmaker[Session]) -> None:
    with pytest.raises(Exception, match="Decimal"):
        seed_session(factory, destination_amount=98.49)


def test_timestamps_come_back_in_utc(factory: sessionmaker[Session]) -> None:
    moment = datetime(2026, 11, 26, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    row = seed_session(factory, created_at=moment)
    with factory() as db:
        stored = db.get(OnrampSession, row.id)
        assert stored is not None
        assert stored.created_at == moment
        assert stored.created_at.tzinfo == UTC


def test_the_migrations_build_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    current, head = migrations.current_and_head(engine)
    assert head is not None
    assert current == head


def test_the_migrations_downgrade_cleanly(engine: Engine) -> None:
    migrations.upgrade(engine, "head")
    command.downgrade(migrations.alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrations.upgrade(engine)
    assert "onramp_sessions" in inspect(engine).get_table_names()


def test_two_migrations_at_once_take_turns(database_url: str, tmp_path: Path) -> None:
    # Two replicas (or a retried Job) upgrading an empty database together, as processes (Alembic's context is
    # process-global): both succeed, and the schema is built once.
    env = {"MUSDPAY_DATABASE_URL": database_url, "MUSDPAY_ENVIRONMENT": "test"}
    runs = [
        start_process(musdpay_command("db", "upgrade"), env=env, log_path=tmp_path / f"upgrade-{i}.log") for i in (1, 2)
    ]
    for run in runs:
        assert run.popen.wait(timeout=120) == 0, run.log()
    engine = create_db_engine(make_settings(database_url))
    try:
        current, head = migrations.current_and_head(engine)
        assert current == head
    finally:
        engine.dispose()
