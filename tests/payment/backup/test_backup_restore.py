"""Restores on both databases never harm the target: a non-empty one is refused without --force, and a
backup whose restored rows are not what its manifest says is refused after restoring aside (a scratch file or
database, gone afterwards), with the target exactly as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from payment.backup.crypto import parse_key
from payment.backup.manifest import Manifest, open_manifest, seal_manifest
from tests.support.backups import (
    Backed,
    all_rows,
    assert_refused,
    backed_up,
    is_empty,
    restore_markers,
    scratch_databases,
    seed_payments,
    session_count,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def backed(database_url: str, tmp_path: Path) -> Backed:
    return backed_up(database_url, tmp_path)


def test_a_non_empty_target_needs_force(backed: Backed, target_url: str) -> None:
    seed_payments(target_url, 2, start=500)
    before = all_rows(target_url)
    refused = backed.run("restore", backed.manifest.id, "--database-url", target_url)
    assert_refused(refused, r"is not empty: .*--force")
    assert all_rows(target_url) == before
    forced = backed.run("restore", backed.manifest.id, "--database-url", target_url, "--force")
    assert forced.code == 0, forced.stderr
    restored = all_rows(target_url)
    assert restore_markers(restored) == [backed.manifest.id]
    assert restored == {**all_rows(backed.database_url), "restore_markers": restored["restore_markers"]}
    assert session_count(target_url) == 6


def test_rows_unlike_the_manifest_leave_the_target_untouched(backed: Backed, target_url: str) -> None:
    """The key holder's manifest says one row more than the dump holds: restored aside, counted, refused, and
    the scratch database or file is gone; the target is as it was."""
    key = parse_key(backed.key)
    manifest = open_manifest(backed.manifest_file.read_bytes(), backed.manifest.id, key)
    tables = {**manifest.tables, "onramp_sessions": manifest.tables["onramp_sessions"] + 1}
    backed.manifest_file.write_bytes(seal_manifest(Manifest(**{**manifest.__dict__, "tables": tables}), key))
    seed_payments(target_url, 1, start=900)
    before = all_rows(target_url)
    scratch_before = set() if target_url.startswith("sqlite") else scratch_databases()
    for args in (
        ("restore", backed.manifest.id, "--database-url", target_url, "--force"),
        ("verify", backed.manifest.id),
    ):
        assert_refused(backed.run(*args), r"row counts differ from the manifest's in onramp_sessions")
    assert all_rows(target_url) == before
    assert not is_empty(target_url)
    if target_url.startswith("sqlite"):
        folder = Path(target_url.removeprefix("sqlite:///")).parent
        assert [path.name for path in folder.iterdir() if path.name.startswith(".musdpay")] == []
    else:
        assert scratch_databases() == scratch_before
    assert not (backed.dest / backed.manifest.id / "verified.json").exists()
