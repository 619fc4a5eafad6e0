"""What a database holds, as a manifest records it: row counts per table and the alembic schema revision."""

from __future__ import annotations

from dataclasses import dataclass

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

__all__ = ["Snapshot", "row_counts", "schema_revision"]


@dataclass(frozen=True)
class Snapshot:
    """What a dump holds: its tables' row counts, its schema revision, the tools' versions, the database's name."""

    tables: dict[str, int]
    revision: str | None
    tools: dict[str, str]
    name: str


def row_counts(connection: Connection) -> dict[str, int]:
    """Every table of the default schema (alembic_version included), counted in the connection's transaction."""
    counts: dict[str, int] = {}
    quote = connection.dialect.identifier_preparer.quote
    for table in sorted(inspect(connection).get_table_names()):
        # The name is the database's own, quoted by the dialect: not input.
        statement = text(f"SELECT count(*) FROM {quote(table)}")  # noqa: S608
        counts[table] = int(connection.execute(statement).scalar_one())
    return counts


def schema_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
