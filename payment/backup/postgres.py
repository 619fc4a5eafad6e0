"""PostgreSQL: `pg_dump --format=custom` from an exported snapshot, and restores through a scratch database.

The dump and the manifest's row counts come from one snapshot: a REPEATABLE READ, READ ONLY transaction exports
it (`pg_export_snapshot()`), counts every table in it, and `pg_dump --snapshot` dumps exactly that state while
the transaction stays open. pg_dump's own compression is off (`--compress=0`): the stream is compressed once,
by the sealing (payment.backup.crypto).

The binaries are those of the server's major version (`/usr/lib/postgresql/<major>/bin`, else PATH when its
major is at least the server's, as pg_dump requires); their versions go into the manifest.

A restore never writes into the target: `pg_restore --single-transaction --exit-on-error` fills a new database
on the same server (`musdpay_restore_<hex>`), which is checked, then renamed to the target's name in one
transaction (the old target, if any, renamed aside and dropped after). A failed restore drops its scratch
database and leaves the target as it was. The connecting role needs CREATEDB (and to own the target to replace
it); the target must have no open connections (stop the API, workers and monitor first).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from payment.backup.errors import BackupError
from payment.backup.tables import Snapshot, row_counts, schema_revision

__all__ = [
    "database_name",
    "drop_database",
    "dump",
    "install",
    "is_empty",
    "open_engine",
    "restore_to_scratch",
    "scratch_url",
]

TOOL_TIMEOUT_SECONDS = 6 * 3600
MAINTENANCE_DATABASES = ("postgres", "template1")


def _url(url: str) -> URL:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg")


def database_name(url: str) -> str:
    name = _url(url).database
    if not name:
        raise BackupError("the PostgreSQL URL names no database (postgresql+psycopg://user@host/dbname)")
    return name


def open_engine(url: str) -> Engine:
    return create_engine(_url(url), poolclass=NullPool, connect_args={"connect_timeout": 10})


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password (which goes to PGPASSWORD, not onto a command line `ps` shows)."""
    parsed = _url(url)
    env = {**os.environ}
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _major(version_text: str) -> int:
    match = re.search(r"(\d+)(?:\.\d+)?", version_text)
    if match is None:
        raise BackupError(f"cannot read a PostgreSQL version from {version_text!r}")
    return int(match.group(1))


def find_tool(name: str, server_major: int) -> tuple[str, str]:
    """The path and `--version` of `name` for a server of `server_major`."""
    candidates = [Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if not candidate.is_file():
            continue
        completed = subprocess.run([str(candidate), "--version"], capture_output=True, text=True, timeout=30)
        version = completed.stdout.strip()
        if completed.returncode == 0 and _major(version.rsplit(" ", 1)[-1]) >= server_major:
            return str(candidate), version
    raise BackupError(
        f"no {name} for PostgreSQL {server_major}: install postgresql-client-{server_major} "
        f"(or put a {name} of version {server_major} or later on PATH)"
    )


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=TOOL_TIMEOUT_SECONDS)
    if completed.returncode != 0:
        detail = " ".join((completed.stderr or completed.stdout).split())[:500]
        raise BackupError(f"{what} failed: {detail}")


def _server_major(engine: Engine) -> tuple[int, str]:
    with engine.connect() as connection:
        number = int(connection.execute(text("SHOW server_version_num")).scalar_one())
        version = str(connection.execute(text("SHOW server_version")).scalar_one())
    return number // 10000, version


def dump(url: str, target: Path) -> Snapshot:
    """pg_dump the database at `url` into `target` (custom format), with row counts of the same snapshot."""
    engine = open_engine(url)
    try:
        major, server_version = _server_major(engine)
        pg_dump, pg_dump_version = find_tool("pg_dump", major)
        libpq, env = _libpq(url)
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection:
            connection.execute(text("SET TRANSACTION READ ONLY"))
            snapshot_id = str(connection.execute(text("SELECT pg_export_snapshot()")).scalar_one())
            tables = row_counts(connection)
            revision = schema_revision(connection)
            _run(
                [
                    pg_dump,
                    "--format=custom",
                    "--compress=0",
                    f"--snapshot={snapshot_id}",
                    "--no-password",
                    f"--file={target}",
                    f"--dbname={libpq}",
                ],
                env,
                "pg_dump",
            )
            connection.rollback()
    finally:
        engine.dispose()
    tools = {"pg_dump": pg_dump_version, "postgresql_server": server_version}
    return Snapshot(tables=tables, revision=revision, tools=tools, name=database_name(url))


@contextmanager
def _maintenance(url: str) -> Iterator[Engine]:
    """An autocommit engine on the same server, connected to a maintenance database (not the target)."""
    last: Exception | None = None
    for name in MAINTENANCE_DATABASES:
        engine = create_engine(
            _url(url).set(database=name),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": 10},
        )
        try:
            with engine.connect():
                pass
        except Exception as exc:  # try the next maintenance database
            engine.dispose()
            last = exc
            continue
        try:
            yield engine
        finally:
            engine.dispose()
        return
    raise BackupError(f"cannot connect to the server's postgres or template1 database: {last}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _exists(engine: Engine, name: str) -> bool:
    with engine.connect() as connection:
        found = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
        return found.first() is not None


def is_empty(url: str) -> bool:
    """True when the database does not exist or holds no table, view or sequence outside the system schemas."""
    name = database_name(url)
    with _maintenance(url) as admin:
        if not _exists(admin, name):
            return True
    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            count = connection.execute(
                text(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') "
                    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return int(count) == 0


def scratch_url(url: str, prefix: str = "musdpay_restore") -> str:
    """The URL of a new scratch database's name on the server of `url` (not created yet)."""
    return _url(url).set(database=f"{prefix}_{uuid.uuid4().hex[:12]}").render_as_string(hide_password=False)


def restore_to_scratch(dump_path: Path, scratch: str) -> None:
    """Create the scratch database and pg_restore the dump into it (dropped again if that fails)."""
    name = database_name(scratch)
    with _maintenance(scratch) as admin, admin.connect() as connection:
        try:
            connection.execute(text(f"CREATE DATABASE {_quote(name)}"))
        except Exception as exc:
            raise BackupError(f"cannot create the scratch database {name} (the role needs CREATEDB): {exc}") from None
    try:
        engine = open_engine(scratch)
        try:
            major, _ = _server_major(engine)
        finally:
            engine.dispose()
        pg_restore, _ = find_tool("pg_restore", major)
        libpq, env = _libpq(scratch)
        _run(
            [
                pg_restore,
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                "--no-password",
                f"--dbname={libpq}",
                str(dump_path),
            ],
            env,
            "pg_restore",
        )
    except BaseException:
        drop_database(scratch)
        raise


def drop_database(url: str) -> None:
    name = database_name(url)
    with _maintenance(url) as admin, admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)"))


def install(scratch: str, target: str) -> None:
    """Rename the scratch database to the target's name (the old target renamed aside in the same transaction,
    then dropped). Refused while anything is connected to the target."""
    scratch_name, target_name = database_name(scratch), database_name(target)
    aside = f"{target_name[:40]}_replaced_{uuid.uuid4().hex[:8]}"
    with _maintenance(target) as admin:
        exists = _exists(admin, target_name)
        with admin.connect() as connection:
            if exists:
                others = connection.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"),
                    {"name": target_name},
                ).scalar_one()
                if int(others):
                    raise BackupError(
                        f"{others} connection(s) are open to {target_name}: stop the API, the delivery worker and "
                        "the monitor, then restore again"
                    )
            connection.execute(text("BEGIN"))
            try:
                if exists:
                    connection.execute(text(f"ALTER DATABASE {_quote(target_name)} RENAME TO {_quote(aside)}"))
                connection.execute(text(f"ALTER DATABASE {_quote(scratch_name)} RENAME TO {_quote(target_name)}"))
                connection.execute(text("COMMIT"))
            except Exception as exc:
                connection.execute(text("ROLLBACK"))
                raise BackupError(f"cannot move the restored database into place as {target_name}: {exc}") from None
            if exists:
                connection.execute(text(f"DROP DATABASE IF EXISTS {_quote(aside)} WITH (FORCE)"))
