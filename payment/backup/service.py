"""Backups of the payment database: create, list, verify, restore and prune (what `musdpay backup` runs).

    key = parse_key(settings.backup_encryption_key.get_secret_value())
    destination = open_destination(dest, endpoint_url=settings.backup_s3_endpoint_url)
    manifest = create_backup(settings.database_url, destination, key)
    verify_backup(manifest.id, destination, key, database_url=settings.database_url)
    restore_backup(manifest.id, destination, key, target_url=url, force=False, on_restored=None)
    prune_backups(destination, key, keep_daily=30, keep_monthly=12)

A backup is `<id>/database.<sqlite|pgdump>.enc` (sealed: payment.backup.crypto), then `<id>/manifest.json`
(payment.backup.manifest), written last: a backup without its manifest is incomplete and never restored.
Reading a backup checks, in order: the manifest's key fingerprint (a wrong key is named as such) and HMAC, the
sealed file's size and SHA-256, every chunk's authentication while decrypting, the plaintext's SHA-256, then,
once restored into a scratch database, the row count of every table and the schema revision. Nothing is
written to the target, nor anything left behind, unless every check passed.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from payment.backup import postgres, sqlite
from payment.backup.crypto import BackupKey, open_file, seal_file, sha256_of
from payment.backup.destinations import Destination, DestinationError
from payment.backup.errors import BackupError
from payment.backup.manifest import (
    MANIFEST,
    Manifest,
    check_id,
    data_key,
    id_time,
    manifest_key,
    new_backup_id,
    open_manifest,
    open_record,
    seal_manifest,
    seal_record,
)
from payment.backup.tables import Snapshot
from payment.core.config import Settings
from payment.core.migrations import head_revision

__all__ = [
    "DEFAULT_KEEP_DAILY",
    "DEFAULT_KEEP_MONTHLY",
    "Listed",
    "OnRestored",
    "Pruned",
    "Verified",
    "create_backup",
    "database_kind",
    "list_backups",
    "prune_backups",
    "restore_backup",
    "select_kept",
    "verify_backup",
]

log = logging.getLogger(__name__)

DEFAULT_KEEP_DAILY = 30
DEFAULT_KEEP_MONTHLY = 12
VERIFIED = "verified.json"

# Called with the restored database (still the scratch one, before it takes the target's place) and the
# backup's manifest: what a restore must leave in the database (a restore marker) goes here, so the target
# never exists without it.
OnRestored = Callable[[Engine, Manifest], None]


def database_kind(url: str) -> str:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return "sqlite"
    if backend in {"postgresql", "postgres"}:
        return "postgresql"
    raise BackupError(f"cannot back up a {backend} database (SQLite and PostgreSQL only)")


def _tools() -> dict[str, str]:
    try:
        version = metadata.version("musdpay")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"musdpay": version, "python": platform.python_version()}


@contextmanager
def _workdir(near: Path | None = None) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=".musdpay-backup-", dir=near))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def create_backup(
    database_url: str, destination: Destination, key: BackupKey, *, now: datetime | None = None
) -> Manifest:
    """Dump, seal and upload the database; the manifest last. `now` sets the backup's time (tests of retention)."""
    kind = database_kind(database_url)
    started = time.monotonic()
    created = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    backup_id = new_backup_id(created)
    with _workdir() as work:
        dumped = work / "database"
        snapshot: Snapshot = (
            sqlite.snapshot(database_url, dumped) if kind == "sqlite" else postgres.dump(database_url, dumped)
        )
        sealed_path = work / "database.enc"
        sealed = seal_file(dumped, sealed_path, key=key, backup_id=backup_id)
        dumped.unlink()
        file_key = data_key(backup_id, kind)
        destination.put(file_key, sealed_path)
        manifest = Manifest(
            id=backup_id,
            created_at=created.isoformat(),
            database_kind=kind,
            database_name=snapshot.name,
            schema_revision=snapshot.revision,
            tables=snapshot.tables,
            file=file_key,
            size_bytes=sealed.size,
            sha256=sealed.sha256,
            plain_size_bytes=sealed.plain_size,
            plain_sha256=sealed.plain_sha256,
            duration_seconds=round(time.monotonic() - started, 3),
            tools={**_tools(), **snapshot.tools},
            key_fingerprint=key.fingerprint,
        )
        manifest_path = work / MANIFEST
        manifest_path.write_bytes(seal_manifest(manifest, key))
        try:
            destination.put(manifest_key(backup_id), manifest_path)
        except BaseException:
            # No manifest, no backup: take the file back too (prune would, later, if this fails as well).
            with contextlib.suppress(Exception):
                destination.delete(file_key)
            raise
    log.info(
        "backup %s created: %d bytes, %d tables",
        backup_id,
        manifest.size_bytes,
        len(manifest.tables),
        extra={"backup_id": backup_id, "duration_seconds": manifest.duration_seconds},
    )
    return manifest


def _get(destination: Destination, key: str, target: Path, missing: str) -> None:
    try:
        destination.get(key, target)
    except DestinationError:
        raise BackupError(missing) from None


def read_manifest(backup_id: str, destination: Destination, key: BackupKey, work: Path) -> Manifest:
    check_id(backup_id)
    path = work / f"{backup_id}.manifest.json"
    _get(
        destination,
        manifest_key(backup_id),
        path,
        f"no backup {backup_id} in {destination.url} (or it is incomplete): see `musdpay backup list`",
    )
    return open_manifest(path.read_bytes(), backup_id, key)


def _fetch_plain(manifest: Manifest, destination: Destination, key: BackupKey, work: Path) -> Path:
    """Download the sealed file, check its size and SHA-256 against the manifest, decrypt it; the dump's path."""
    sealed = work / "database.enc"
    _get(destination, manifest.file, sealed, f"backup {manifest.id}: its file {manifest.file} is missing")
    size = sealed.stat().st_size
    if size != manifest.size_bytes:
        raise BackupError(
            f"backup {manifest.id}: the file is {size} bytes, the manifest says {manifest.size_bytes} "
            "(truncated or tampered with)"
        )
    if sha256_of(sealed) != manifest.sha256:
        raise BackupError(f"backup {manifest.id}: the file's SHA-256 differs from the manifest's (tampered with)")
    plain = work / "database.plain"
    opened = open_file(sealed, plain, key=key, backup_id=manifest.id)
    sealed.unlink()
    if opened.plain_sha256 != manifest.plain_sha256 or opened.plain_size != manifest.plain_size_bytes:
        raise BackupError(f"backup {manifest.id}: the decrypted dump differs from the manifest's checksum")
    return plain


def _check_restored(engine: Engine, manifest: Manifest) -> None:
    from payment.backup.tables import row_counts, schema_revision

    with engine.connect() as connection:
        counts = row_counts(connection)
        revision = schema_revision(connection)
    if counts != manifest.tables:
        differ = sorted(
            name for name in set(counts) | set(manifest.tables) if counts.get(name) != manifest.tables.get(name)
        )
        raise BackupError(
            f"backup {manifest.id}: restored row counts differ from the manifest's in {', '.join(differ)}"
        )
    if revision != manifest.schema_revision:
        raise BackupError(
            f"backup {manifest.id}: restored schema revision {revision} is not the manifest's "
            f"{manifest.schema_revision}"
        )


def _to_head(engine: Engine, url: str, manifest: Manifest) -> None:
    """Bring a restored database made by an older release to this release's head (refusing a newer one)."""
    from alembic.script import ScriptDirectory

    from payment.core import migrations

    head = head_revision()
    if manifest.schema_revision == head:
        return
    scripts = ScriptDirectory.from_config(migrations.alembic_config())
    known = {revision.revision for revision in scripts.walk_revisions()}
    if manifest.schema_revision is not None and manifest.schema_revision not in known:
        raise BackupError(
            f"backup {manifest.id} is at schema revision {manifest.schema_revision}, unknown to this musdpay "
            f"(head {head}): restore it with the release that made it ({manifest.tools.get('musdpay', '?')})"
        )
    from payment.core.db import create_db_engine

    writer = create_db_engine(Settings(database_url=url))
    try:
        migrations.upgrade(writer)
    finally:
        writer.dispose()
    current, _ = migrations.current_and_head(engine)
    if current != head:
        raise BackupError(f"backup {manifest.id}: migrations did not reach head {head} (at {current})")


@dataclass(frozen=True)
class Verified:
    manifest: Manifest
    verified_at: datetime
    at_head: bool


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def verify_backup(
    backup_id: str, destination: Destination, key: BackupKey, *, database_url: str, now: datetime | None = None
) -> Verified:
    """Restore the backup into a scratch database (a temporary SQLite file; on PostgreSQL a temporary database
    on the server of `database_url`, dropped after) and check it; record the verification in the destination."""
    with _workdir() as work:
        manifest = read_manifest(backup_id, destination, key, work)
        plain = _fetch_plain(manifest, destination, key, work)
        if manifest.database_kind == "sqlite":
            sqlite.check_integrity(plain)
            engine = sqlite.open_engine(plain)
            try:
                _check_restored(engine, manifest)
            finally:
                engine.dispose()
        else:
            if database_kind(database_url) != "postgresql":
                raise BackupError(
                    f"backup {backup_id} is of PostgreSQL: verify it with a PostgreSQL MUSDPAY_DATABASE_URL "
                    "(its scratch database is made on that server)"
                )
            scratch = postgres.scratch_url(database_url, "musdpay_verify")
            postgres.restore_to_scratch(plain, scratch)
            try:
                engine = postgres.open_engine(scratch)
                try:
                    _check_restored(engine, manifest)
                finally:
                    engine.dispose()
            finally:
                postgres.drop_database(scratch)
        verified_at = (now or datetime.now(UTC)).astimezone(UTC)
        record = {"id": backup_id, "verifiedAt": verified_at.isoformat(), "sha256": manifest.sha256}
        record_path = work / VERIFIED
        record_path.write_bytes(seal_record(record, key))
        destination.put(f"{backup_id}/{VERIFIED}", record_path)
    return Verified(manifest=manifest, verified_at=verified_at, at_head=manifest.schema_revision == head_revision())


def restore_backup(
    backup_id: str,
    destination: Destination,
    key: BackupKey,
    *,
    target_url: str,
    force: bool = False,
    on_restored: OnRestored | None = None,
) -> Manifest:
    """Restore into `target_url`: refused when it holds tables (unless `force`); restored and checked in a
    scratch database first, brought to head, then moved into place whole."""
    kind = database_kind(target_url)
    with _workdir() as work:
        manifest = read_manifest(backup_id, destination, key, work)
        if manifest.database_kind != kind:
            raise BackupError(
                f"backup {backup_id} is of {manifest.database_kind}, the target is {kind}: restore into a "
                f"{manifest.database_kind} database"
            )
        if kind == "sqlite":
            _restore_sqlite(manifest, destination, key, work, sqlite.database_path(target_url), force, on_restored)
        else:
            _restore_postgres(manifest, destination, key, work, target_url, force, on_restored)
    log.info("backup %s restored", backup_id, extra={"backup_id": backup_id})
    return manifest


def _refuse_non_empty(empty: bool, force: bool, where: str) -> None:
    if not empty and not force:
        raise BackupError(f"{where} is not empty: restore into an empty database, or pass --force to replace it")


def _restore_sqlite(
    manifest: Manifest,
    destination: Destination,
    key: BackupKey,
    work: Path,
    target: Path,
    force: bool,
    on_restored: OnRestored | None,
) -> None:
    _refuse_non_empty(sqlite.is_empty(target), force, str(target))
    if not target.parent.is_dir():
        raise BackupError(f"no directory {target.parent} for the restored database")
    plain = _fetch_plain(manifest, destination, key, work)
    sqlite.check_integrity(plain)
    with _workdir(target.parent) as beside:  # the same file system: the final rename is atomic
        scratch = beside / target.name
        shutil.move(plain, scratch)
        engine = sqlite.open_engine(scratch)
        try:
            _check_restored(engine, manifest)
            _to_head(engine, _sqlite_url(scratch), manifest)
            if on_restored is not None:
                on_restored(engine, manifest)
        finally:
            engine.dispose()
        sqlite.install(scratch, target)


def _restore_postgres(
    manifest: Manifest,
    destination: Destination,
    key: BackupKey,
    work: Path,
    target_url: str,
    force: bool,
    on_restored: OnRestored | None,
) -> None:
    _refuse_non_empty(postgres.is_empty(target_url), force, f"database {postgres.database_name(target_url)}")
    plain = _fetch_plain(manifest, destination, key, work)
    scratch = postgres.scratch_url(target_url)
    postgres.restore_to_scratch(plain, scratch)
    try:
        engine = postgres.open_engine(scratch)
        try:
            _check_restored(engine, manifest)
            _to_head(engine, scratch, manifest)
            if on_restored is not None:
                on_restored(engine, manifest)
        finally:
            engine.dispose()
        postgres.install(scratch, target_url)
    except BaseException:
        postgres.drop_database(scratch)
        raise


@dataclass(frozen=True)
class Listed:
    id: str
    manifest: Manifest | None
    problem: str | None = None  # why it cannot be restored (incomplete, tampered, another key)
    verified_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "id": self.id,
            "ok": self.problem is None,
            "problem": self.problem,
            "createdAt": m.created_at if m else None,
            "database": m.database_kind if m else None,
            "sizeBytes": m.size_bytes if m else None,
            "schemaRevision": m.schema_revision if m else None,
            "rows": sum(m.tables.values()) if m else None,
            "verifiedAt": self.verified_at.isoformat() if self.verified_at else None,
        }


def list_backups(destination: Destination, key: BackupKey) -> list[Listed]:
    """Every backup in the destination, oldest first; each checked (manifest HMAC, key), not downloaded whole."""
    keys = destination.list()
    ids = sorted({name.split("/", 1)[0] for name in keys if "/" in name and id_time(name.split("/", 1)[0])})
    present = set(keys)
    listed: list[Listed] = []
    with _workdir() as work:
        for backup_id in ids:
            if manifest_key(backup_id) not in present:
                listed.append(Listed(backup_id, None, "incomplete: no manifest (the backup did not finish)"))
                continue
            try:
                manifest = read_manifest(backup_id, destination, key, work)
            except BackupError as exc:
                listed.append(Listed(backup_id, None, str(exc)))
                continue
            problem = None if manifest.file in present else f"its file {manifest.file} is missing"
            verified_at = None
            if f"{backup_id}/{VERIFIED}" in present:
                record_path = work / f"{backup_id}.verified.json"
                try:
                    destination.get(f"{backup_id}/{VERIFIED}", record_path)
                    record = open_record(record_path.read_bytes(), backup_id, key)
                    if record.get("sha256") == manifest.sha256:
                        verified_at = datetime.fromisoformat(str(record["verifiedAt"]))
                except (BackupError, DestinationError, KeyError, ValueError):
                    verified_at = None
            listed.append(Listed(backup_id, manifest, problem, verified_at))
    return listed


def select_kept(created: dict[str, datetime], *, keep_daily: int, keep_monthly: int) -> set[str]:
    """The ids a retention of `keep_daily` days and `keep_monthly` months keeps: the newest backup of each of the
    `keep_daily` most recent days that have one, and of each of the `keep_monthly` most recent months (UTC).
    The newest backup is always kept."""
    newest_first = sorted(created, key=lambda backup_id: (created[backup_id], backup_id), reverse=True)
    kept: set[str] = set(newest_first[:1])
    for keep, period in ((keep_daily, "%Y-%m-%d"), (keep_monthly, "%Y-%m")):
        seen: set[str] = set()
        for backup_id in newest_first:
            bucket = created[backup_id].astimezone(UTC).strftime(period)
            if bucket in seen:
                continue
            if len(seen) >= keep:
                break
            seen.add(bucket)
            kept.add(backup_id)
    return kept


@dataclass(frozen=True)
class Pruned:
    kept: list[str]
    deleted: list[str]
    skipped: list[str] = field(default_factory=list)  # unreadable backups left for an operator


def prune_backups(
    destination: Destination,
    key: BackupKey,
    *,
    keep_daily: int = DEFAULT_KEEP_DAILY,
    keep_monthly: int = DEFAULT_KEEP_MONTHLY,
    dry_run: bool = False,
) -> Pruned:
    """Delete the backups the retention does not keep, and incomplete ones older than the newest good backup.
    A backup whose manifest cannot be read (tampered, another key) is never deleted: it is reported."""
    if keep_daily < 0 or keep_monthly < 0 or keep_daily + keep_monthly == 0:
        raise BackupError("prune needs --keep-daily or --keep-monthly of at least 1")
    listed = list_backups(destination, key)
    good = {item.id: item.manifest.created for item in listed if item.manifest is not None and item.problem is None}
    kept = select_kept(good, keep_daily=keep_daily, keep_monthly=keep_monthly)
    newest = max(good, default=None)
    incomplete = [
        item.id for item in listed if item.manifest is None and item.problem and item.problem.startswith("incomplete")
    ]
    doomed = sorted(set(good) - kept) + [i for i in incomplete if newest is not None and i < newest]
    skipped = sorted(item.id for item in listed if item.id not in good and item.id not in incomplete)
    if not dry_run:
        keys = destination.list()
        for backup_id in sorted(doomed):
            owned = [name for name in keys if name.startswith(f"{backup_id}/")]
            # The manifest first: a prune cut short leaves an incomplete backup, never a manifest without a file.
            for name in sorted(owned, key=lambda name: name != manifest_key(backup_id)):
                destination.delete(name)
    return Pruned(kept=sorted(kept), deleted=sorted(doomed), skipped=skipped)
