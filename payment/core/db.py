"""Database engine, session factory and the declarative base.

SQLite is the embedded default and PostgreSQL (psycopg 3) the production database. SQLite runs in WAL mode with
one pooled connection: it has a single writer anyway, and queueing on the pool is fairer and faster than
SQLite's own sleep-and-retry busy handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Connection, DateTime, Dialect, Engine, MetaData, Numeric, String, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator, TypeEngine
from starlette.concurrency import run_in_threadpool

from payment.core.config import Settings
from payment.core.metrics import InstrumentedQueuePool

__all__ = [
    "Base",
    "ExactDecimal",
    "UTCDateTime",
    "core_transaction",
    "create_db_engine",
    "make_session_factory",
    "run_db_on",
]

T = TypeVar("T")

POSTGRES_CONNECT_TIMEOUT_SECONDS = 10

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ExactDecimal(TypeDecorator[Decimal]):
    """A decimal stored exactly as given: unconstrained NUMERIC on PostgreSQL (which keeps the scale, so "98.49"
    stays "98.49"), canonical text on SQLite (which has no decimal type)."""

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(String(64))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise TypeError(f"ExactDecimal needs a finite Decimal, got {value!r}")
        if dialect.name == "postgresql":
            return value
        return format(value, "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops the zone; this puts it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide where transactions begin (pysqlite's legacy mode defers BEGIN).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: a read-then-write transaction can never fail to upgrade
        # (SQLITE_BUSY_SNAPSHOT) because another process wrote in between.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            echo=settings.database_echo,
            connect_args={"check_same_thread": False, "timeout": 10},
            poolclass=InstrumentedQueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=30,
        )
        _configure_sqlite(engine)
        return engine
    # TLS options (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) stay in the URL's query and reach libpq as they
    # are; a connect timeout (unless the URL sets one) turns an unreachable server into an error, not a hang.
    connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS}
    return create_engine(
        url,
        echo=settings.database_echo,
        connect_args=connect_args,
        poolclass=InstrumentedQueuePool,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size * 2,
        pool_pre_ping=True,
        pool_timeout=10,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def core_transaction(factory: sessionmaker[Session]) -> AbstractContextManager[Connection]:
    """A transaction on a plain Connection of the factory's engine, for hot paths that need no ORM session:
    commits on success, rolls back on error."""
    engine: Engine = factory.kw["bind"]
    return engine.begin()


def run_db_on(engine: Engine) -> Callable[..., Awaitable[Any]]:
    """An awaitable runner of short database work on `engine`: inline on SQLite, in the thread pool otherwise.

    SQLite is a local file with one pooled connection, so its short transactions cost less than the hop to a
    worker thread (and the lock traffic of many threads queueing on one connection); PostgreSQL waits on the
    network, so it must not block the event loop.
    """
    inline = engine.dialect.name == "sqlite"

    async def run_db(function: Callable[..., T], /, **kwargs: Any) -> T:
        if inline:
            return function(**kwargs)
        return await run_in_threadpool(function, **kwargs)

    return run_db
