"""Prepared statements run on the driver: the same values as through SQLAlchemy, on both backends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from payment.core.config import Settings
from payment.core.db import create_db_engine
from payment.core.statements import Statement, direct_on, direct_transaction
from payment.onramp import store
from payment.onramp.models import OnrampSession
from tests.payment.conftest import WALLET, seed_session

SECRET = "cos_secret_must_never_reach_a_log"


def session_values(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "stripe_session_id": f"cos_{uuid.uuid4().hex[:24]}",
        "client_secret": SECRET,
        "status": "initialized",
        "livemode": True,
        "wallet_address": WALLET,
        "source_amount": Decimal("100.00"),
        "source_currency": "usd",
        "destination_currency": "musd",
        "destination_network": "mezo",
        "customer_ip_address": None,
        "transaction_id": None,
        "destination_amount": Decimal("12345678901234567890.123456789012345678"),
        "network_fee_amount": None,
        "transaction_fee_amount": None,
        "idempotency_key": None,
        "request_fingerprint": "0" * 64,
        "creation_started_at": None,
        "last_event_id": "",
        "last_event_created": 2**40,
        "creation_traceparent": None,
        "created_at": now,
        "updated_at": now,
    }
    values.update(overrides)
    return values


def test_a_direct_write_reads_back_through_the_orm_unchanged(factory: sessionmaker[Session]) -> None:
    # A whole second and a non-UTC zone: a hand-rolled ISO format would store these differently from SQLAlchemy.
    moment = datetime(2026, 11, 26, 12, 30, 15, tzinfo=timezone(timedelta(hours=-5)))
    values = session_values(created_at=moment, updated_at=moment + timedelta(microseconds=7))
    with direct_transaction(factory) as conn:
        store.insert_session(conn, values)
    with factory() as db:
        stored = db.get(OnrampSession, values["id"])
        assert stored is not None
        for key, value in values.items():
            assert getattr(stored, key) == value, key
        assert stored.created_at.tzinfo == UTC
        assert str(stored.destination_amount) == "12345678901234567890.123456789012345678"
        assert stored.livemode is True
        # The stored text is what SQLAlchemy's own comparison binds: a query on the timestamp finds the row.
        found = db.scalars(select(OnrampSession.id).where(OnrampSession.created_at == moment)).all()
        assert found == [values["id"]]


def test_a_direct_read_gives_what_the_orm_wrote(factory: sessionmaker[Session]) -> None:
    row = seed_session(factory, destination_amount=Decimal("98.490"), transaction_fee_amount=Decimal("0.5"))
    with direct_transaction(factory) as conn:
        loaded = store.load_by_id(conn, row.id)
    assert loaded is not None
    assert loaded.destination_amount == Decimal("98.490")
    assert str(loaded.destination_amount) == "98.490"  # the scale survives: an exact decimal, not a float
    assert loaded.transaction_fee_amount == Decimal("0.5")
    assert loaded.created_at == row.created_at
    assert loaded.created_at.tzinfo == UTC
    assert loaded.livemode is False
    assert loaded.network_fee_amount is None


def test_a_failed_block_writes_nothing_and_returns_its_connection(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    values = session_values()

    def write_then_fail() -> None:
        with direct_transaction(engine) as conn:
            store.insert_session(conn, values)
            raise RuntimeError("the process fails after the write")

    with pytest.raises(RuntimeError):
        write_then_fail()
    with factory() as db:
        assert db.get(OnrampSession, values["id"]) is None
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_unique_violation_is_sqlalchemys_integrity_error_without_the_parameters(
    factory: sessionmaker[Session],
) -> None:
    values = session_values()
    with direct_transaction(factory) as conn:
        store.insert_session(conn, values)
    with pytest.raises(IntegrityError) as caught, direct_transaction(factory) as conn:
        store.insert_session(conn, values | {"stripe_session_id": "cos_other"})
    assert SECRET not in str(caught.value)
    assert "INSERT INTO onramp_sessions" in str(caught.value)
    with factory() as db:  # the first row stands, alone
        assert db.get(OnrampSession, values["id"]) is not None
        assert db.scalars(select(OnrampSession.id).where(OnrampSession.stripe_session_id == "cos_other")).all() == []


def test_an_unreachable_database_is_an_operational_error(tmp_path: Any, database_url: str) -> None:
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path}/missing/directory/db.sqlite"
    else:
        url = "postgresql+psycopg://postgres@127.0.0.1:9/test"
    engine = create_db_engine(Settings(environment="test", database_url=url))
    try:
        with pytest.raises(OperationalError), direct_transaction(engine):
            pass
    finally:
        engine.dispose()


def test_a_missing_parameter_is_refused_before_anything_runs(factory: sessionmaker[Session]) -> None:
    statement = Statement(select(store.SESSIONS.c.id).where(store.SESSIONS.c.id == bindparam("session_id")))
    with pytest.raises(KeyError, match="session_id"), direct_transaction(factory) as conn:
        conn.first(statement, {})


def test_statements_join_the_transaction_of_a_sqlalchemy_connection(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    values = session_values()

    def write_then_fail() -> None:
        with engine.begin() as connection:
            store.insert_session(direct_on(connection), values)
            assert store.load_by_id(direct_on(connection), values["id"]) is not None  # visible inside
            raise RuntimeError("the owner rolls back")

    with pytest.raises(RuntimeError):
        write_then_fail()
    with factory() as db:
        assert db.get(OnrampSession, values["id"]) is None


def test_each_statement_is_a_client_span_when_traced(factory: sessionmaker[Session]) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    values = session_values()
    with direct_transaction(factory, provider.get_tracer("test")) as conn:
        store.insert_session(conn, values)
        store.load_by_id(conn, values["id"])
    statements = [span for span in exporter.get_finished_spans() if span.name in ("INSERT", "SELECT")]
    assert [span.name for span in statements] == ["INSERT", "SELECT"]
    for span in statements:
        assert span.kind is SpanKind.CLIENT
        assert span.attributes is not None
        assert span.attributes["db.system"] in ("sqlite", "postgresql")
    assert str(statements[0].attributes["db.statement"]).startswith("INSERT INTO onramp_sessions")  # type: ignore[index]
    assert SECRET not in str(statements[0].attributes)


def test_statements_that_need_python_side_defaults_are_refused(engine: Engine) -> None:
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("v", String, default=str))
    statement = Statement(insert(table))
    with pytest.raises(ValueError, match="callable default"):
        statement.compiled(engine.dialect, ("id",))


def test_a_session_record_has_exactly_the_columns_of_the_table() -> None:
    assert list(store.SessionRecord.__dataclass_fields__) == [column.key for column in store.SESSIONS.columns]


def test_all_rows_come_back_converted(factory: sessionmaker[Session]) -> None:
    old = datetime.now(UTC) - timedelta(hours=1)
    rows = [session_values(status="creating", creation_started_at=old - timedelta(seconds=i)) for i in range(3)]
    with direct_transaction(factory) as conn:
        for values in rows:
            store.insert_session(conn, values)
    with direct_transaction(factory, write=False) as conn:
        stale = store.stale_creations(conn, datetime.now(UTC), limit=2)
    assert len(stale) == 2
    assert {record.id for record in stale} <= {values["id"] for values in rows}
    assert all(record.creation_started_at is not None and record.creation_started_at.tzinfo == UTC for record in stale)
