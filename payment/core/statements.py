"""Prepared statements executed straight on the pooled DBAPI connection, for the request hot paths.

A SQLAlchemy `Connection` costs about 0.1 ms to open and 0.08 ms per statement above the driver (execution
context, result wrapper, events), measured on this machine; a webhook runs four statements in one transaction,
so that was a third of its handling. Here SQLAlchemy still does everything that needs knowing a database: a
Core statement is compiled once per dialect and set of parameter names (SQL text, quoting, paramstyle), and
each parameter and result column goes through its column type's own processors (UTC datetimes, exact
decimals, booleans). Only the per-call machinery is skipped: the statement runs on the DBAPI cursor of a
connection checked out from the engine's pool (so pool metrics, pre-ping and the SQLite pragmas still apply).

Errors are raised as SQLAlchemy's exception classes (`IntegrityError`, `OperationalError`, ...), with the
parameters hidden (a webhook payload carries a client secret), so callers and the API's problem handlers see
what they would see from a `Connection`. When spans are exported, each statement gets a client span shaped as
opentelemetry-instrumentation-sqlalchemy's (`db.system`, `db.statement`, `db.operation`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

__all__ = ["DirectConnection", "Statement", "direct_on", "direct_transaction"]

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Bind:
    name: str
    processor: Processor | None
    default: Any
    required: bool


@dataclass(slots=True)
class _Compiled:
    sql: str
    operation: str  # the first keyword (SELECT, INSERT, ...): the span's name
    binds: tuple[_Bind, ...]
    positional: bool
    columns: tuple[tuple[str, TypeEngine[Any]], ...]  # result columns of a SELECT, in order, with their types
    # Result processors, made from the first result's cursor.description: a driver may pick its conversion by
    # the column's type code (psycopg returns NUMERIC as Decimal already).
    processors: tuple[tuple[str, Processor | None], ...] | None = None

    def result_processors(self, dialect: Dialect, description: Any) -> tuple[tuple[str, Processor | None], ...]:
        if self.processors is None:
            self.processors = tuple(
                (key, type_.dialect_impl(dialect).result_processor(dialect, column[1]))
                for (key, type_), column in zip(self.columns, description, strict=True)
            )
        return self.processors

    def parameters(self, params: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        values = []
        for bind in self.binds:
            if bind.name in params:
                value = params[bind.name]
            elif bind.required:
                raise KeyError(f"statement parameter {bind.name!r} is missing")
            else:
                value = bind.default
            values.append(bind.processor(value) if bind.processor is not None and value is not None else value)
        if self.positional:
            return tuple(values)
        return {bind.name: value for bind, value in zip(self.binds, values, strict=True)}


class Statement:
    """A Core statement (or one per dialect name, for dialect-specific forms such as ON CONFLICT), compiled on
    first use for each dialect and set of parameter names. Build these once, at import."""

    def __init__(self, statement: ClauseElement | Mapping[str, ClauseElement]) -> None:
        self._statements = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def compiled(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        cache_key = (dialect.name, keys)
        found = self._compiled.get(cache_key)
        if found is None:
            found = self._compiled[cache_key] = self._compile(dialect, keys)
        return found

    def _compile(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        statement = self._statements[dialect.name] if isinstance(self._statements, Mapping) else self._statements
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        assert isinstance(compiled, SQLCompiler)
        # What this executor does not do, refused when the statement is built rather than silently mishandled.
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("pass every column with a Python-side callable default explicitly")
        sql = compiled.string
        if "POSTCOMPILE" in sql or compiled.escaped_bind_names:
            raise ValueError("expanding or escaped bind parameters are not supported here")
        names = list(compiled.positiontup or ()) if dialect.positional else list(compiled.binds)
        binds = []
        for name in names:
            bind = compiled.binds[name]
            binds.append(
                _Bind(
                    name=name,
                    processor=bind.type.dialect_impl(dialect).bind_processor(dialect),
                    default=bind.value,
                    required=name in keys or bind.required or bind.callable is not None,
                )
            )
        selected = getattr(statement, "selected_columns", None)
        columns = tuple(
            (column.key, column.type)
            for column in (selected if selected is not None and sql.lstrip().upper().startswith("SELECT") else ())
        )
        operation = sql.split(None, 1)[0].upper()
        return _Compiled(sql, operation, tuple(binds), dialect.positional, columns)


class DirectConnection:
    """Statements on one DBAPI connection, inside a transaction someone else commits."""

    def __init__(self, dbapi_connection: Any, dialect: Dialect, tracer: trace.Tracer | None = None) -> None:
        self._connection = dbapi_connection
        self.dialect = dialect
        self._tracer = tracer
        self._error = dialect.loaded_dbapi.Error

    def execute(self, statement: Statement, params: Mapping[str, Any]) -> int:
        """Run a write; the number of rows it changed."""
        compiled = statement.compiled(self.dialect, tuple(sorted(params)))
        cursor = self._run(compiled, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def first(self, statement: Statement, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Run a query; its first row by column key, each value converted by its column type (None: no row)."""
        rows = self._query(statement, params, first=True)
        return rows[0] if rows else None

    def all(self, statement: Statement, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run a query; every row, as `first` gives one."""
        return self._query(statement, params, first=False)

    def _query(self, statement: Statement, params: Mapping[str, Any], *, first: bool) -> list[dict[str, Any]]:
        compiled = statement.compiled(self.dialect, tuple(sorted(params)))
        cursor = self._run(compiled, params)
        try:
            if first:
                row = cursor.fetchone()
                rows = [] if row is None else [row]
            else:
                rows = cursor.fetchall()
            if not rows:
                return []
            processors = compiled.result_processors(self.dialect, cursor.description)
        finally:
            cursor.close()
        return [
            {
                key: convert(value) if convert is not None else value
                for (key, convert), value in zip(processors, row, strict=True)
            }
            for row in rows
        ]

    def run_sql(self, sql: str) -> None:
        """A statement without parameters or results (BEGIN IMMEDIATE)."""
        compiled = _Compiled(sql, sql.split(None, 1)[0].upper(), (), True, ())
        self._run(compiled, {}).close()

    def commit(self) -> None:
        try:
            self._connection.commit()
        except self._error as error:
            raise self._translate(error, "COMMIT", None) from error

    def _run(self, compiled: _Compiled, params: Mapping[str, Any]) -> Any:
        parameters = compiled.parameters(params)
        cursor = self._connection.cursor()
        try:
            if self._tracer is None:
                cursor.execute(compiled.sql, parameters)
            else:
                attributes = {
                    "db.system": self.dialect.name,
                    "db.statement": compiled.sql,
                    "db.operation": compiled.operation,
                }
                with self._tracer.start_as_current_span(
                    compiled.operation, kind=SpanKind.CLIENT, attributes=attributes
                ):
                    cursor.execute(compiled.sql, parameters)
        except self._error as error:
            cursor.close()
            raise self._translate(error, compiled.sql, cursor) from error
        return cursor

    def _translate(self, error: Exception, sql: str, cursor: Any) -> DBAPIError:
        invalidated = bool(self.dialect.is_disconnect(error, self._connection, cursor))  # type: ignore[arg-type]
        translated = DBAPIError.instance(
            sql,
            None,
            error,
            self._error,
            hide_parameters=True,
            connection_invalidated=invalidated,
            dialect=self.dialect,
        )
        assert isinstance(translated, DBAPIError)
        return translated


@contextmanager
def direct_transaction(
    bind: Engine | sessionmaker[Session], tracer: trace.Tracer | None = None, *, write: bool = True
) -> Iterator[DirectConnection]:
    """One transaction on a pooled connection of `bind` (an engine, or the session factory the services are
    given): committed when the block ends, rolled back if it raises.

    A writing transaction on SQLite begins IMMEDIATE, as the engine's own transactions do (payment/core/db.py):
    a read-then-write transaction then never fails to upgrade its lock because another process wrote in
    between. `write=False` (reads only) begins a deferred one, which does not hold other processes' writers.
    """
    engine: Engine = bind if isinstance(bind, Engine) else bind.kw["bind"]
    error_class = engine.dialect.loaded_dbapi.Error
    try:
        pooled = engine.raw_connection()
    except error_class as error:  # the database cannot be reached: OperationalError, as from engine.connect()
        raise DBAPIError.instance(
            None, None, error, error_class, hide_parameters=True, dialect=engine.dialect
        ) from error
    direct = DirectConnection(pooled.dbapi_connection, engine.dialect, tracer)
    try:
        if engine.dialect.name == "sqlite":
            direct.run_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        yield direct
        direct.commit()
    except BaseException as error:
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            pooled.invalidate(error)  # a dead connection goes back to no one
        else:
            _rollback(pooled)
        raise
    finally:
        pooled.close()


def _rollback(pooled: Any) -> None:
    try:
        pooled.rollback()
    except Exception as error:  # the connection broke mid-transaction: drop it rather than reuse it
        pooled.invalidate(error)


def direct_on(conn: Connection, tracer: trace.Tracer | None = None) -> DirectConnection:
    """Direct statements inside a SQLAlchemy Connection's current transaction (its owner commits)."""
    return DirectConnection(conn.connection.dbapi_connection, conn.dialect, tracer)
