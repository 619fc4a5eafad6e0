"""SQLite: a consistent copy through the online backup API while the API keeps writing, and a restore that
replaces the file whole.

`sqlite3.Connection.backup` copies every page in one step from a read transaction of its own: in WAL mode
writers go on meanwhile and the copy is the database as of that transaction's start. Row counts and the schema
revision are read from the copy, so they describe exactly what the backup holds.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from payment.backup.errors import BackupError
from payment.backup.tables import Snapshot, row_counts, schema_revision

__all__ = ["check_integrity", "database_path", "describe", "install", "is_empty", "open_engine", "snapshot"]


def database_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError("a SQLite database to back up or restore must be a file path (sqlite:///path/to/db.sqlite)")
    return Path(database)


def _read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection by URI (the path percent-encoded, so `?` or `#` in a name cannot change it)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def open_engine(path: Path) -> Engine:
    return create_engine(f"sqlite:///{path}", poolclass=NullPool)


def describe(path: Path) -> tuple[dict[str, int], str | None]:
    engine = open_engine(path)
    try:
        with engine.connect() as connection:
            return row_counts(connection), schema_revision(connection)
    finally:
        engine.dispose()


def snapshot(url: str, target: Path) -> Snapshot:
    """Copy the live database at `url` into `target` (a new file)."""
    source_path = database_path(url)
    if not source_path.is_file():
        raise BackupError(f"no SQLite database at {source_path} (MUSDPAY_DATABASE_URL)")
    source = _read_only(source_path)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        finally:
            copy.close()
    finally:
        source.close()
    tables, revision = describe(target)
    tools = {"sqlite": sqlite3.sqlite_version}
    return Snapshot(tables=tables, revision=revision, tools=tools, name=source_path.name)


def is_empty(path: Path) -> bool:
    """True when there is no file, or it holds no table."""
    if not path.exists():
        return True
    connection = _read_only(path)
    try:
        found = connection.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a SQLite database ({exc}); move it away or pass --force") from None
    finally:
        connection.close()
    return int(found[0]) == 0


def check_integrity(path: Path) -> None:
    connection = _read_only(path)
    try:
        result = connection.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the restored SQLite file is not a database ({exc})") from None
    finally:
        connection.close()
    if result is None or result[0] != "ok":
        raise BackupError(f"the restored SQLite file fails its integrity check: {result[0] if result else '?'}")


def install(restored: Path, target: Path) -> None:
    """Put `restored` (a file in the target's directory) in the place of `target`, in one rename.

    A target in WAL mode may hold committed pages in `-wal`: they are checkpointed into the old file first (so a
    stale WAL can never be replayed onto the new file), then the new file is renamed over it."""
    if target.exists():
        connection = sqlite3.connect(target, timeout=30)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
    os.replace(restored, target)
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
