"""What a backup says about itself: `<id>/manifest.json`, authenticated with an HMAC from the backup key.

    {"format": "musdpay-backup/1", "keyFingerprint": "...", "manifest": {...}, "hmac": "<hex>"}

The manifest is readable without the key (an operator can see what a bucket holds), but only the key can make
or check its HMAC, so a changed row count, checksum or revision is detected. The HMAC covers the fingerprint
and the manifest's canonical JSON (sorted keys, no spaces). The manifest holds no secret: no URL, no password,
only the database's kind and name (names of tables and their row counts are visible to readers of the bucket).

Backup ids are the creation time in UTC and a random suffix, `20261204T100000Z-1a2b3c`: they sort by time.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from payment.backup.crypto import BackupKey
from payment.backup.errors import BackupError, WrongKey

__all__ = [
    "EXTENSIONS",
    "FORMAT",
    "MANIFEST",
    "Manifest",
    "check_id",
    "data_key",
    "id_time",
    "manifest_key",
    "new_backup_id",
    "open_manifest",
    "open_record",
    "seal_manifest",
    "seal_record",
]

FORMAT = "musdpay-backup/1"
MANIFEST = "manifest.json"
_ID = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]{6}$")
EXTENSIONS = {"sqlite": "sqlite", "postgresql": "pgdump"}


def new_backup_id(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}"


def id_time(backup_id: str) -> datetime | None:
    """The creation time an id carries, or None for a name that is not a backup id."""
    match = _ID.match(backup_id)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def check_id(backup_id: str) -> str:
    if id_time(backup_id) is None:
        raise BackupError(f"{backup_id!r} is not a backup id (YYYYMMDDTHHMMSSZ-xxxxxx; see `musdpay backup list`)")
    return backup_id


def manifest_key(backup_id: str) -> str:
    return f"{backup_id}/{MANIFEST}"


def data_key(backup_id: str, kind: str) -> str:
    return f"{backup_id}/database.{EXTENSIONS[kind]}.enc"


@dataclass(frozen=True)
class Manifest:
    id: str
    created_at: str  # ISO 8601, UTC
    database_kind: str  # sqlite | postgresql
    database_name: str  # the file's name or the PostgreSQL database's name
    schema_revision: str | None
    tables: dict[str, int]  # row counts per table, at the backup's snapshot
    file: str  # the sealed file's key in the destination
    size_bytes: int  # of the sealed file
    sha256: str  # of the sealed file
    plain_size_bytes: int  # of the dump (SQLite file, pg_dump archive) before compression and encryption
    plain_sha256: str
    duration_seconds: float
    tools: dict[str, str] = field(default_factory=dict)  # musdpay, python, sqlite / pg_dump and server versions
    key_fingerprint: str = ""
    cipher: str = "AES-256-GCM, 1 MiB chunks, zlib"

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    def to_json(self) -> dict[str, Any]:
        return {_camel(name): value for name, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        names = {_camel(name): name for name in cls.__dataclass_fields__}
        unknown = set(data) - set(names)
        if unknown:
            raise BackupError(
                f"the manifest has unknown fields ({', '.join(sorted(unknown))}): a newer musdpay made it"
            )
        return cls(**{names[key]: value for key, value in data.items()})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def seal_manifest(manifest: Manifest, key: BackupKey) -> bytes:
    body = manifest.to_json()
    mac = key.mac(_canonical({"keyFingerprint": key.fingerprint, "manifest": body}))
    document = {"format": FORMAT, "keyFingerprint": key.fingerprint, "manifest": body, "hmac": mac}
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def seal_record(record: dict[str, Any], key: BackupKey) -> bytes:
    """Another small authenticated JSON document (the verification record)."""
    mac = key.mac(_canonical({"keyFingerprint": key.fingerprint, "record": record}))
    return (
        json.dumps({"format": FORMAT, "keyFingerprint": key.fingerprint, "record": record, "hmac": mac}) + "\n"
    ).encode()


def _document(raw: bytes, backup_id: str, key: BackupKey, what: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BackupError(f"backup {backup_id}: its {what} is corrupt or tampered with (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BackupError(f"backup {backup_id}: its {what} is not a {FORMAT} document")
    fingerprint = document.get("keyFingerprint")
    if fingerprint != key.fingerprint:
        raise WrongKey(
            f"backup {backup_id} was made with another key (fingerprint {fingerprint}); "
            f"MUSDPAY_BACKUP_ENCRYPTION_KEY has fingerprint {key.fingerprint}: configure the key it was made with"
        )
    return document


def open_manifest(raw: bytes, backup_id: str, key: BackupKey) -> Manifest:
    document = _document(raw, backup_id, key, "manifest")
    body = document.get("manifest")
    mac = document.get("hmac")
    if not isinstance(body, dict) or not isinstance(mac, str):
        raise BackupError(f"backup {backup_id}: its manifest is incomplete")
    if not key.check_mac(_canonical({"keyFingerprint": key.fingerprint, "manifest": body}), mac):
        raise BackupError(f"backup {backup_id}: its manifest is corrupt or tampered with (HMAC mismatch)")
    try:
        manifest = Manifest.from_json(body)
    except TypeError:
        raise BackupError(f"backup {backup_id}: its manifest lacks fields") from None
    if manifest.id != backup_id:
        raise BackupError(f"backup {backup_id}: its manifest describes backup {manifest.id}")
    return manifest


def open_record(raw: bytes, backup_id: str, key: BackupKey) -> dict[str, Any]:
    document = _document(raw, backup_id, key, "verification record")
    record, mac = document.get("record"), document.get("hmac")
    if not isinstance(record, dict) or not isinstance(mac, str):
        raise BackupError(f"backup {backup_id}: its verification record is incomplete")
    if not key.check_mac(_canonical({"keyFingerprint": key.fingerprint, "record": record}), mac):
        raise BackupError(f"backup {backup_id}: its verification record is tampered with (HMAC mismatch)")
    return record
