"""WAL segments to and from a backup destination: what PostgreSQL's `archive_command` and `restore_command` run.

    archive_wal(destination, Path("pg_wal/000000010000000000000003"), "000000010000000000000003")
    restore_wal(destination, "000000010000000000000003", Path("pg_wal/RECOVERYXLOG"))   # False: not archived

Layout under the destination: `wal/<file>.gz` (gzip level 1: a segment closed early by `archive_timeout` is
mostly zeros, and level 1 costs little CPU on the archiver's critical path), and `wal-latest.json`, the newest
segment and when it was archived (the newest recoverable point, read by the monitor without listing times).

PostgreSQL's contract (docs, "Continuous Archiving"): the archive command must exit non-zero unless the file is
safely stored, and must never overwrite an existing archived file with different content (a second cluster
archiving to the same place, or a restored one on the old timeline, would otherwise destroy the history a
restore needs). Archiving the same file again (after a crash between our upload and PostgreSQL's bookkeeping)
succeeds without writing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from payment.backup.destinations import Destination, DestinationError

__all__ = [
    "LATEST_KEY",
    "WAL_PREFIX",
    "LatestWal",
    "WalArchiveConflict",
    "WalError",
    "archive_wal",
    "latest_wal",
    "restore_wal",
    "wal_key",
]

WAL_PREFIX = "wal/"
LATEST_KEY = "wal-latest.json"

# A segment (timeline + log + segment, 24 hex digits), its .partial (left by a promotion), a backup history file,
# or a timeline history file: everything PostgreSQL ever hands to archive_command.
_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
_NAME = re.compile(r"^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$")


class WalError(RuntimeError):
    """A WAL file name PostgreSQL never produces, or a file that cannot be read."""


class WalArchiveConflict(WalError):
    """The destination already holds a different file of that name: refuse, never overwrite."""


@dataclass(frozen=True)
class LatestWal:
    segment: str
    archived_at: datetime


def wal_key(name: str) -> str:
    if not _NAME.match(name):
        raise WalError(f"{name!r} is not a WAL file name (archive_command passes %f, restore_command %f)")
    return f"{WAL_PREFIX}{name}.gz"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archive_wal(
    destination: Destination, path: Path, name: str, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> bool:
    """Store `path` as WAL file `name`. True if written, False if the same content was already there; raises
    WalArchiveConflict when a different file of that name is (the caller exits non-zero: PostgreSQL retries and
    `pg_stat_archiver.failed_count` grows, which the monitor alerts on)."""
    key = wal_key(name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WalError(f"cannot read {path}: {exc.strerror}") from None
    with tempfile.TemporaryDirectory(prefix="musdpay-wal-") as scratch:
        existing = Path(scratch) / "existing.gz"
        try:
            destination.get(key, existing)
        except DestinationError:
            pass  # not archived yet: the usual case
        else:
            try:
                same = _digest(gzip.decompress(existing.read_bytes())) == _digest(data)
            except (OSError, EOFError):
                same = False  # an unreadable object is not ours to replace silently either
            if same:
                return False
            raise WalArchiveConflict(
                f"{key} in {destination.url} already exists with different content: another cluster archives "
                "there, or this one was restored onto an old timeline; give each cluster its own destination"
            )
        compressed = Path(scratch) / f"{name}.gz"
        compressed.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
        destination.put(key, compressed)
        if _SEGMENT.match(name):
            latest = Path(scratch) / "latest.json"
            latest.write_text(json.dumps({"segment": name, "archivedAt": now().isoformat()}))
            destination.put(LATEST_KEY, latest)
    return True


def restore_wal(destination: Destination, name: str, target: Path) -> bool:
    """Write archived WAL file `name` to `target`. False when it was never archived (PostgreSQL asks for files
    that may not exist, such as the next timeline's history: the command then exits 1, quietly)."""
    key = wal_key(name)
    with tempfile.TemporaryDirectory(prefix="musdpay-wal-") as scratch:
        compressed = Path(scratch) / "segment.gz"
        try:
            destination.get(key, compressed)
        except DestinationError:
            return False
        data = gzip.decompress(compressed.read_bytes())
    partial = target.with_name(f".{target.name}.musdpay")
    partial.write_bytes(data)
    partial.replace(target)  # PostgreSQL must never read half a segment
    return True


def latest_wal(destination: Destination) -> LatestWal | None:
    """The newest archived segment and when, or None if nothing was archived yet."""
    with tempfile.TemporaryDirectory(prefix="musdpay-wal-") as scratch:
        path = Path(scratch) / "latest.json"
        try:
            destination.get(LATEST_KEY, path)
        except DestinationError:
            return None
        raw = json.loads(path.read_text())
    return LatestWal(segment=str(raw["segment"]), archived_at=datetime.fromisoformat(str(raw["archivedAt"])))
