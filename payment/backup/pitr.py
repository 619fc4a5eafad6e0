"""PostgreSQL point-in-time recovery: base backups, the archiving settings, the recovery window, and a restore to
a moment. The procedure is docs/runbooks/procedures/PointInTimeRecovery.md; the commands are `musdpay pitr ...`.

    backup = take_base_backup(destination, "postgresql://postgres@db/musdpay")      # pg_basebackup, tar format
    window = recovery_window(destination)        # oldest and newest recoverable point
    restore_to_time(destination, Path("/var/lib/postgresql/15/restored"), target, restore_command="...")

Layout under the destination (a directory or s3://bucket/prefix, payment.backup.destinations):

    base/<id>/base.tar.gz, pg_wal.tar.gz, backup_manifest    pg_basebackup -Ft -z -X stream
    base/<id>/backup.json                                     written last: a backup without it is incomplete
    wal/<segment>.gz, wal-latest.json                         payment.backup.wal (archive_command)

A base backup is a valid starting point for targets at or after its end (the moment its WAL makes it
consistent), so the oldest recoverable point is the end of the oldest base backup, and the newest is the time
the newest segment was archived (commits after it are in WAL not yet archived: that distance is the RPO).
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from payment.backup.destinations import Destination, DestinationError
from payment.backup.wal import latest_wal

__all__ = [
    "BASE_PREFIX",
    "BaseBackup",
    "PitrError",
    "RecoveryWindow",
    "archive_settings",
    "find_pg_binary",
    "libpq_url",
    "list_base_backups",
    "recovery_window",
    "restore_to_time",
    "take_base_backup",
]

BASE_PREFIX = "base/"
_FILES = ("base.tar.gz", "pg_wal.tar.gz", "backup_manifest")


class PitrError(RuntimeError):
    """A base backup or restore that cannot be done; the message names the fix."""


@dataclass(frozen=True)
class BaseBackup:
    id: str
    start_time: datetime
    end_time: datetime  # the earliest moment a restore from this backup can reach
    timeline: int
    start_lsn: str
    end_lsn: str
    start_wal: str  # the first segment a restore needs from the archive (or pg_wal.tar.gz)
    end_wal: str
    server_version: str
    size_bytes: int

    def to_json(self) -> str:
        raw = asdict(self)
        raw["start_time"], raw["end_time"] = self.start_time.isoformat(), self.end_time.isoformat()
        return json.dumps(raw, indent=2)

    @classmethod
    def from_json(cls, text: str) -> BaseBackup:
        raw = json.loads(text)
        raw["start_time"] = datetime.fromisoformat(raw["start_time"])
        raw["end_time"] = datetime.fromisoformat(raw["end_time"])
        return cls(**raw)


@dataclass(frozen=True)
class RecoveryWindow:
    oldest: datetime | None  # end of the oldest complete base backup
    newest: datetime | None  # when the newest WAL segment was archived
    newest_segment: str | None
    base_backups: int


def find_pg_binary(name: str) -> Path:
    """A PostgreSQL client binary: on PATH, else the newest /usr/lib/postgresql/*/bin (Debian's layout)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise PitrError(f"{name} not found: install the PostgreSQL client tools (postgresql-client) or put it on PATH")
    return Path(candidates[-1])


def libpq_url(url: str) -> str:
    """The service's SQLAlchemy URL (postgresql+psycopg://...) as a libpq one, for pg_basebackup and psycopg."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    if not url.startswith("postgresql://"):
        raise PitrError("point-in-time recovery is for PostgreSQL: MUSDPAY_DATABASE_URL is not a postgresql:// URL")
    return url


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def archive_settings(archive_command: str, *, archive_timeout_seconds: int = 30) -> dict[str, str]:
    """What postgresql.conf needs for archiving (a restart is needed for archive_mode and wal_level).
    archive_timeout bounds the RPO: a segment that is not full is switched and archived after this long."""
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": _conf_quote(archive_command),
        "archive_timeout": f"{archive_timeout_seconds}s",
    }


def _segment_name(timeline: int, lsn: str, segment_size: int) -> str:
    high, low = (int(part, 16) for part in lsn.split("/"))
    number = ((high << 32) | low) // segment_size
    per_id = 0x1_0000_0000 // segment_size
    return f"{timeline:08X}{number // per_id:08X}{number % per_id:08X}"


def take_base_backup(
    destination: Destination,
    database_url: str,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    timeout_seconds: float = 3600.0,
) -> BaseBackup:
    """pg_basebackup (tar, gzip, WAL streamed alongside) uploaded to `destination`, backup.json last."""
    import psycopg

    conninfo = libpq_url(database_url)
    started = now()
    backup_id = started.strftime("%Y%m%dT%H%M%S%fZ")
    with tempfile.TemporaryDirectory(prefix="musdpay-basebackup-") as scratch:
        target = Path(scratch) / "backup"
        command = [
            str(find_pg_binary("pg_basebackup")), "-d", conninfo, "-D", str(target), "-Ft", "-z", "-X", "stream",
            "-c", "fast", "-l", f"musdpay {backup_id}", "--no-sync",
        ]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_seconds, check=False)
        if completed.returncode != 0:
            raise PitrError(
                f"pg_basebackup failed ({completed.returncode}): {completed.stderr.strip()[-2000:]}; the role needs "
                "REPLICATION and pg_hba.conf a `replication` line for this host"
            )
        ended = now()
        manifest = json.loads((target / "backup_manifest").read_text())
        wal_range = manifest["WAL-Ranges"][0]
        timeline, start_lsn, end_lsn = int(wal_range["Timeline"]), wal_range["Start-LSN"], wal_range["End-LSN"]
        with psycopg.connect(conninfo, connect_timeout=10) as connection:
            size = connection.execute("SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'")
            row = size.fetchone()
            version = connection.execute("SHOW server_version").fetchone()
        if row is None or version is None:
            raise PitrError("the server did not report wal_segment_size and server_version")
        segment_size = int(row[0])
        backup = BaseBackup(
            id=backup_id,
            start_time=started,
            end_time=ended,
            timeline=timeline,
            start_lsn=start_lsn,
            end_lsn=end_lsn,
            start_wal=_segment_name(timeline, start_lsn, segment_size),
            end_wal=_segment_name(timeline, end_lsn, segment_size),
            server_version=str(version[0]),
            size_bytes=sum((target / name).stat().st_size for name in _FILES),
        )
        for name in _FILES:
            destination.put(f"{BASE_PREFIX}{backup_id}/{name}", target / name)
        described = Path(scratch) / "backup.json"
        described.write_text(backup.to_json())
        destination.put(f"{BASE_PREFIX}{backup_id}/backup.json", described)
    return backup


def list_base_backups(destination: Destination) -> list[BaseBackup]:
    """Complete base backups (with their backup.json), oldest first."""
    backups: list[BaseBackup] = []
    with tempfile.TemporaryDirectory(prefix="musdpay-pitr-") as scratch:
        for key in destination.list(BASE_PREFIX):
            if not key.endswith("/backup.json"):
                continue
            path = Path(scratch) / "backup.json"
            destination.get(key, path)
            backups.append(BaseBackup.from_json(path.read_text()))
    return sorted(backups, key=lambda backup: backup.end_time)


def recovery_window(destination: Destination) -> RecoveryWindow:
    backups = list_base_backups(destination)
    latest = latest_wal(destination)
    return RecoveryWindow(
        oldest=backups[0].end_time if backups else None,
        newest=latest.archived_at if latest is not None else None,
        newest_segment=latest.segment if latest is not None else None,
        base_backups=len(backups),
    )


def _extract(archive: Path, into: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        # The 'tar' filter keeps modes (PostgreSQL wants 0600/0700) but refuses absolute paths and escapes.
        tar.extractall(into, filter="tar")


def restore_to_time(
    destination: Destination,
    pgdata: Path,
    target_time: datetime,
    *,
    restore_command: str,
    backup_id: str | None = None,
) -> BaseBackup:
    """Lay out the newest base backup that ends before `target_time` in the empty `pgdata`, and configure
    recovery to that moment: restore_command, recovery_target_time, recovery_target_action=promote and
    recovery.signal. Start the server on it (pg_ctl start) to replay; it promotes itself at the target."""
    if target_time.tzinfo is None:
        raise PitrError("the target time needs a time zone (e.g. 2026-12-04T10:00:00Z)")
    if pgdata.exists() and any(pgdata.iterdir()):
        raise PitrError(f"{pgdata} is not empty: restore into a new directory (never over a cluster's data)")
    backups = list_base_backups(destination)
    if backup_id is not None:
        backups = [backup for backup in backups if backup.id == backup_id]
        if not backups:
            raise PitrError(f"no base backup {backup_id} in {destination.url} (musdpay pitr list)")
    usable = [backup for backup in backups if backup.end_time <= target_time]
    if not usable:
        oldest = backups[0].end_time.isoformat() if backups else "none"
        raise PitrError(
            f"no base backup in {destination.url} ends before {target_time.isoformat()} (oldest recoverable "
            f"point: {oldest}): choose a later target"
        )
    chosen = usable[-1]
    pgdata.mkdir(parents=True, exist_ok=True)
    pgdata.chmod(0o700)
    with tempfile.TemporaryDirectory(prefix="musdpay-restore-") as scratch:
        for name, into in (("base.tar.gz", pgdata), ("pg_wal.tar.gz", pgdata / "pg_wal")):
            local = Path(scratch) / name
            try:
                destination.get(f"{BASE_PREFIX}{chosen.id}/{name}", local)
            except DestinationError as exc:
                raise PitrError(f"base backup {chosen.id} is incomplete: {exc}") from None
            into.mkdir(exist_ok=True)
            _extract(local, into)
    settings = {
        "restore_command": _conf_quote(restore_command),
        "recovery_target_time": _conf_quote(target_time.astimezone(UTC).isoformat(sep=" ")),
        "recovery_target_action": "'promote'",
        "recovery_target_timeline": "'latest'",
    }
    with (pgdata / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"\n# musdpay pitr restore of base backup {chosen.id} to {target_time.isoformat()}\n")
        conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
    (pgdata / "recovery.signal").touch()
    return chosen
