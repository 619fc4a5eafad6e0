"""Backup tests' helpers: a payment database with rows, every row of a database (to compare two), and
`musdpay backup` run as a subprocess with its environment."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import make_url

from payment.backup.crypto import parse_key
from payment.backup.destinations import open_destination
from payment.backup.manifest import Manifest, id_time
from payment.backup.service import create_backup
from payment.core import migrations
from payment.core.config import Settings
from payment.core.db import create_db_engine, make_session_factory
from payment.onramp.models import OnrampSession, SessionStatusChange
from payment.webhooks.models import WebhookEvent
from tests.support.services import ROOT, musdpay_command, postgres_admin_url

__all__ = [
    "Backed",
    "CliResult",
    "all_rows",
    "assert_refused",
    "backed_up",
    "files_of",
    "is_empty",
    "new_key",
    "restore_markers",
    "round_trip",
    "run_backup",
    "scratch_databases",
    "seed_payments",
    "session_count",
]

WALLET = "0x52908400098527886E0F7030069857D2E4169EE7"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def seed_payments(url: str, sessions: int, *, start: int = 0) -> None:
    """Migrate the database at `url` to head and add `sessions` sessions, each with a status change and a
    webhook event."""
    engine = create_db_engine(Settings(database_url=url))
    try:
        migrations.upgrade(engine)
        factory = make_session_factory(engine)
        at = datetime.now(UTC) - timedelta(hours=1)
        with factory() as db, db.begin():
            for number in range(start, start + sessions):
                session_id = str(uuid.uuid4())
                db.add(
                    OnrampSession(
                        id=session_id,
                        stripe_session_id=f"cos_{uuid.uuid4().hex[:24]}",
                        client_secret=f"cos_secret_{uuid.uuid4().hex}",
                        status="fulfillment_complete",
                        livemode=False,
                        wallet_address=WALLET,
                        source_amount=Decimal(f"{10 + number}.25"),
                        source_currency="usd",
                        destination_currency="musd",
                        destination_network="mezo",
                        request_fingerprint="0" * 64,
                        last_event_id="",
                        last_event_created=0,
                        created_at=at,
                        updated_at=at,
                    )
                )
                db.flush()
                db.add(
                    SessionStatusChange(
                        session_id=session_id,
                        from_status=None,
                        to_status="fulfillment_complete",
                        source="webhook",
                        occurred_at=at,
                    )
                )
                db.add(
                    WebhookEvent(
                        id=f"evt_{uuid.uuid4().hex[:24]}",
                        type="crypto.onramp_session_updated",
                        stripe_created=int(at.timestamp()),
                        received_at=at,
                        processed_at=at,
                        outcome="processed",
                        payload=f'{{"n": {number}}}',
                    )
                )
    finally:
        engine.dispose()


def all_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted, as text (so two backends' values compare alike)."""
    engine = create_db_engine(Settings(database_url=url))
    try:
        with engine.connect() as connection:
            tables = sorted(inspect(connection).get_table_names())
            quote = connection.dialect.identifier_preparer.quote
            rows = {
                table: sorted(
                    tuple("" if v is None else str(v) for v in row)
                    for row in connection.execute(text(f"SELECT * FROM {quote(table)}"))  # noqa: S608
                )
                for table in tables
            }
    finally:
        engine.dispose()
    return rows


def restore_markers(rows: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    """The backup ids of the restore markers among `all_rows`' rows."""
    return [value for row in rows.get("restore_markers", []) for value in row if id_time(value) is not None]


def is_empty(url: str) -> bool:
    if make_url(url).get_backend_name() == "sqlite":
        path = make_url(url).database
        if not path or not os.path.exists(path):
            return True
    engine = create_db_engine(Settings(database_url=url))
    try:
        with engine.connect() as connection:
            return not inspect(connection).get_table_names()
    finally:
        engine.dispose()


def session_count(url: str) -> int:
    engine = create_db_engine(Settings(database_url=url))
    try:
        with make_session_factory(engine)() as db:
            return len(db.execute(select(OnrampSession.id)).all())
    finally:
        engine.dispose()


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = self.stdout.strip().splitlines()
        return lines[-1] if lines else ""


def run_backup(*args: str, database_url: str, key: str, endpoint_url: str = "", timeout: float = 60) -> CliResult:
    """`musdpay backup ARGS` with the service's database and key in its environment (and the test's S3
    credentials, which running_s3 put in os.environ)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MUSDPAY_")}
    env.update(
        {
            "MUSDPAY_DATABASE_URL": database_url,
            "MUSDPAY_BACKUP_ENCRYPTION_KEY": key,
            "MUSDPAY_BACKUP_S3_ENDPOINT_URL": endpoint_url,
            "MUSDPAY_ENVIRONMENT": "test",
            "MUSDPAY_LOG_LEVEL": "WARNING",
        }
    )
    completed = subprocess.run(
        musdpay_command("backup", *args), capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


@dataclass
class Backed:
    database_url: str
    dest: Path
    key: str
    manifest: Manifest

    def run(self, *args: str, key: str | None = None) -> CliResult:
        return run_backup(*args, "--dest", str(self.dest), database_url=self.database_url, key=key or self.key)

    @property
    def data_file(self) -> Path:
        return self.dest / self.manifest.file

    @property
    def manifest_file(self) -> Path:
        return self.dest / self.manifest.id / "manifest.json"


def backed_up(database_url: str, tmp_path: Path) -> Backed:
    key = new_key()
    seed_payments(database_url, 6)
    dest = tmp_path / "backups"
    manifest = create_backup(database_url, open_destination(str(dest)), parse_key(key))
    return Backed(database_url, dest, key, manifest)


def files_of(dest: Path) -> dict[str, bytes]:
    return {path.relative_to(dest).as_posix(): path.read_bytes() for path in sorted(dest.rglob("*")) if path.is_file()}


def scratch_databases() -> set[str]:
    with psycopg.connect(postgres_admin_url(), autocommit=True) as connection:
        rows = connection.execute("SELECT datname FROM pg_database WHERE datname ~ '^musdpay_(restore|verify)_'")
        return {row[0] for row in rows}


def assert_refused(result: CliResult, pattern: str) -> None:
    assert result.code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert re.search(pattern, lines[0]), lines[0]
    assert lines[0].startswith("error: ")


def _at_head(url: str) -> bool:
    engine = create_db_engine(Settings(database_url=url))
    try:
        current, head = migrations.current_and_head(engine)
    finally:
        engine.dispose()
    return current == head and head is not None


def round_trip(database_url: str, target_url: str, dest: str, endpoint: str = "") -> str:
    key = new_key()
    seed_payments(database_url, 25)
    created = run_backup("create", "--dest", dest, database_url=database_url, key=key, endpoint_url=endpoint)
    assert created.code == 0, created.stderr
    backup_id = created.last_line
    listed = run_backup("list", "--dest", dest, "--json", database_url=database_url, key=key, endpoint_url=endpoint)
    assert listed.code == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert entry["id"] == backup_id
    assert entry["ok"] is True
    assert entry["verifiedAt"] is None

    verified = run_backup(
        "verify", backup_id, "--dest", dest, database_url=database_url, key=key, endpoint_url=endpoint
    )
    assert verified.code == 0, verified.stderr

    source_rows = all_rows(database_url)
    assert len(source_rows["onramp_sessions"]) == 25
    restored = run_backup(
        "restore", backup_id, "--dest", dest, "--database-url", target_url,
        database_url=database_url, key=key, endpoint_url=endpoint,
    )  # fmt: skip
    assert restored.code == 0, restored.stderr
    restored = all_rows(target_url)
    assert restore_markers(restored) == [backup_id]  # the restore marked the database (payment.delivery.recovery)
    assert restored == {**source_rows, "restore_markers": restored["restore_markers"]}
    assert _at_head(target_url)
    return backup_id
