"""`musdpay backup` round trips on both databases, to a directory (S3: test_backup_s3.py), through the
command line as scripts use it: the id on create's last line, list, verify, restore into a fresh database with
every row equal and the schema at head; and a backup taken while the API writes is consistent."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from payment.backup.crypto import parse_key
from payment.backup.destinations import open_destination
from payment.backup.service import create_backup
from payment.core import migrations
from tests.support.backups import new_key, round_trip, run_backup, seed_payments, session_count
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_round_trip_to_a_directory(database_url: str, target_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    backup_id = round_trip(database_url, target_url, str(dest))
    kind = "sqlite" if database_url.startswith("sqlite") else "pgdump"
    files = sorted(path.relative_to(dest).as_posix() for path in dest.rglob("*") if path.is_file())
    assert files == [f"{backup_id}/database.{kind}.enc", f"{backup_id}/manifest.json", f"{backup_id}/verified.json"]
    manifest = json.loads((dest / backup_id / "manifest.json").read_text())["manifest"]
    assert manifest["tables"]["onramp_sessions"] == 25
    assert manifest["schemaRevision"] == migrations.head_revision()
    assert ("pg_dump" if kind == "pgdump" else "sqlite") in manifest["tools"]
    # Encrypted: no row's content is readable in the file (a wallet address is in every session).
    assert b"52908400098527886" not in (dest / backup_id / f"database.{kind}.enc").read_bytes()


def test_a_backup_taken_while_the_api_writes_is_consistent(database_url: str, tmp_path: Path) -> None:
    """Rows keep arriving during the backup: its manifest's counts are those of its snapshot, which verify
    checks against the restored copy."""
    key = new_key()
    seed_payments(database_url, 10)
    stop = threading.Event()
    written = [0]

    def write() -> None:
        while not stop.is_set():
            seed_payments(database_url, 1, start=1000 + written[0])
            written[0] += 1

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_until(lambda: written[0] > 0, what="the first write")
        manifest = create_backup(database_url, open_destination(str(tmp_path / "b")), parse_key(key))
    finally:
        stop.set()
        writer.join(30)
    # Some writes landed before the snapshot, some after: the manifest counts exactly its snapshot.
    assert manifest.tables["onramp_sessions"] > 10
    assert manifest.tables["onramp_sessions"] == manifest.tables["webhook_events"]
    assert session_count(database_url) == 10 + written[0]
    verified = run_backup("verify", manifest.id, "--dest", str(tmp_path / "b"), database_url=database_url, key=key)
    assert verified.code == 0, verified.stderr
