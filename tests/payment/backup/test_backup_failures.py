"""What `musdpay backup` refuses, each with a clear one-line message, a non-zero exit, and nothing written: a
wrong key, a truncated or tampered file, a tampered manifest, a missing backup. These checks come before any
database is touched, so one backend shows them; test_backup_restore.py has the restores on both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.backups import Backed, assert_refused, backed_up, files_of, new_key

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_backed(tmp_path: Path) -> Backed:
    return backed_up(f"sqlite:///{tmp_path / 'live.sqlite'}", tmp_path)


def _refused_everywhere(backed: Backed, tmp_path: Path, pattern: str, key: str | None = None) -> None:
    """verify and restore both refuse; the destination and the (absent) target are untouched."""
    before = files_of(backed.dest)
    target = tmp_path / "target.sqlite"
    assert_refused(backed.run("verify", backed.manifest.id, key=key), pattern)
    assert_refused(backed.run("restore", backed.manifest.id, "--database-url", f"sqlite:///{target}", key=key), pattern)
    assert files_of(backed.dest) == before
    assert not target.exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".musdpay")] == []


def test_a_wrong_key_is_named_as_such(sqlite_backed: Backed, tmp_path: Path) -> None:
    _refused_everywhere(sqlite_backed, tmp_path, r"made with another key .*configure the key", key=new_key())


def test_a_truncated_file_is_refused(sqlite_backed: Backed, tmp_path: Path) -> None:
    data = sqlite_backed.data_file.read_bytes()
    sqlite_backed.data_file.write_bytes(data[: len(data) - 20])
    _refused_everywhere(sqlite_backed, tmp_path, r"truncated")


def test_one_flipped_byte_of_the_ciphertext_is_refused(sqlite_backed: Backed, tmp_path: Path) -> None:
    data = bytearray(sqlite_backed.data_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    sqlite_backed.data_file.write_bytes(bytes(data))
    _refused_everywhere(sqlite_backed, tmp_path, r"tampered")


def test_one_flipped_byte_of_the_manifest_is_refused(sqlite_backed: Backed, tmp_path: Path) -> None:
    text = sqlite_backed.manifest_file.read_text()
    count = sqlite_backed.manifest.tables["onramp_sessions"]
    changed = text.replace(f'"onramp_sessions": {count}', f'"onramp_sessions": {count + 1}')
    assert changed != text
    sqlite_backed.manifest_file.write_text(changed)
    _refused_everywhere(sqlite_backed, tmp_path, r"manifest is corrupt or tampered with")


def test_a_missing_backup_is_named(sqlite_backed: Backed, tmp_path: Path) -> None:
    absent = "20200101T000000Z-000000"
    assert_refused(sqlite_backed.run("verify", absent), rf"no backup {absent} in .*musdpay backup list")
    assert_refused(
        sqlite_backed.run("restore", "../etc", "--database-url", "sqlite:////tmp/x.sqlite"), "not a backup id"
    )
    sqlite_backed.data_file.unlink()
    assert_refused(sqlite_backed.run("verify", sqlite_backed.manifest.id), r"its file .* is missing")
    listed = sqlite_backed.run("list", "--json")
    assert listed.code == 0
    assert json.loads(listed.stdout)[0]["ok"] is False
