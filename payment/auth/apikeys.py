"""API keys for servers and operators: `mpk_<key id>_<secret>`, shown once, stored as a hash.

The key id (16 hex digits) is public and finds the row; the secret is 256 bits from `secrets`, so a plain
SHA-256 of it cannot be brute-forced and needs no slow KDF (a KDF slows guessing of low-entropy passwords; a
256-bit secret has nothing to guess). Comparison is constant-time, and an unknown key id costs the same
comparison as a known one.

Rotation issues a new key in the same family (same name and role) and lets the old one live for a grace
period; revocation ends a key at once. `last_used_at` is written at most once a minute per key, so a busy key
costs one indexed read per request and a write per minute.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from payment.auth import audit
from payment.auth.errors import Unauthorized
from payment.auth.models import ApiKey
from payment.auth.principal import Principal, Role
from payment.core.db import core_transaction
from payment.core.problems import FieldError, NotFound, Problem, ValidationProblem

__all__ = [
    "KEY_PREFIX",
    "ApiKeyInfo",
    "IssuedKey",
    "authenticate",
    "create_key",
    "list_keys",
    "looks_like_api_key",
    "revoke_key",
    "rotate_key",
]

KEY_PREFIX = "mpk_"
_KEY = re.compile(r"^mpk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[\w .:@/-]{1,100}$")
LAST_USED_RESOLUTION = timedelta(seconds=60)
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key: everything but its secret and hash."""

    id: str
    family_id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None
    last_used_at: datetime | None

    def status(self, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None:
            return "expired" if self.expires_at <= now else "rotating"
        return "active"

    @classmethod
    def of(cls, row: Any) -> ApiKeyInfo:
        return cls(
            id=row.id,
            family_id=row.family_id,
            name=row.name,
            role=Role(row.role),
            created_at=row.created_at,
            created_by=row.created_by,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            replaced_by=row.replaced_by,
            last_used_at=row.last_used_at,
        )


@dataclass(frozen=True)
class IssuedKey:
    key: str  # the whole key; shown once, never stored
    info: ApiKeyInfo


def looks_like_api_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX)


def _hash(key_id: str, secret: str) -> str:
    return hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest()


def _check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise ValidationProblem(
            [FieldError("body.name", "must be 1 to 100 letters, digits, spaces or . : @ / - _", "invalid")]
        )
    return name


def _insert(
    conn: Connection, *, name: str, role: Role, family_id: str | None, actor: audit.Actor, now: datetime
) -> IssuedKey:
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    values = {
        "id": key_id,
        "family_id": family_id or key_id,
        "name": name,
        "role": role.value,
        "secret_hash": _hash(key_id, secret),
        "created_at": now,
        "created_by": actor.name[:128],
    }
    conn.execute(insert(ApiKey).values(**values))
    info = ApiKeyInfo(
        id=key_id,
        family_id=family_id or key_id,
        name=name,
        role=role,
        created_at=now,
        created_by=actor.name[:128],
        expires_at=None,
        revoked_at=None,
        replaced_by=None,
        last_used_at=None,
    )
    return IssuedKey(key=f"{KEY_PREFIX}{key_id}_{secret}", info=info)


def _load(conn: Connection, key_id: str) -> Any:
    row = conn.execute(select(ApiKey.__table__).where(ApiKey.id == key_id)).first()
    if row is None:
        raise NotFound(f"No API key with id {key_id!r}.")
    return row


def create_key(
    *, factory: sessionmaker[Session], name: str, role: Role, actor: audit.Actor, now: datetime | None = None
) -> IssuedKey:
    now = now or datetime.now(UTC)
    name = _check_name(name)
    with core_transaction(factory) as conn:
        issued = _insert(conn, name=name, role=role, family_id=None, actor=actor, now=now)
        detail = {"name": name, "role": role.value}
        audit.record(conn, actor=actor, action="api_key.create", target=issued.info.id, detail=detail, at=now)
    return issued


def rotate_key(
    *,
    factory: sessionmaker[Session],
    key_id: str,
    grace_seconds: int,
    actor: audit.Actor,
    now: datetime | None = None,
) -> IssuedKey:
    """A new key of the same family; the old one stays valid for `grace_seconds` (never longer than it was)."""
    now = now or datetime.now(UTC)
    with core_transaction(factory) as conn:
        old = _load(conn, key_id)
        if old.revoked_at is not None or (old.expires_at is not None and old.expires_at <= now):
            raise Problem(
                status=409, slug="api-key-not-rotatable", detail="A revoked or expired key cannot be rotated."
            )
        if old.replaced_by is not None:
            raise Problem(
                status=409,
                slug="api-key-not-rotatable",
                detail=f"Key {key_id} was already rotated to {old.replaced_by}; rotate that one.",
            )
        issued = _insert(conn, name=old.name, role=Role(old.role), family_id=old.family_id, actor=actor, now=now)
        ends = now + timedelta(seconds=grace_seconds)
        if old.expires_at is not None:
            ends = min(ends, old.expires_at)
        conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(expires_at=ends, replaced_by=issued.info.id))
        audit.record(
            conn,
            actor=actor,
            action="api_key.rotate",
            target=key_id,
            detail={"new_key_id": issued.info.id, "old_key_valid_until": ends.isoformat()},
            at=now,
        )
    return issued


def revoke_key(
    *, factory: sessionmaker[Session], key_id: str, actor: audit.Actor, now: datetime | None = None
) -> ApiKeyInfo:
    now = now or datetime.now(UTC)
    with core_transaction(factory) as conn:
        old = _load(conn, key_id)
        if old.revoked_at is None:
            conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=now))
            audit.record(conn, actor=actor, action="api_key.revoke", target=key_id, detail={"name": old.name}, at=now)
        return ApiKeyInfo.of(_load(conn, key_id))


def list_keys(*, factory: sessionmaker[Session]) -> list[ApiKeyInfo]:
    with core_transaction(factory) as conn:
        rows = conn.execute(select(ApiKey.__table__).order_by(ApiKey.created_at.desc(), ApiKey.id)).all()
    return [ApiKeyInfo.of(row) for row in rows]


def authenticate(*, factory: sessionmaker[Session], presented: str, now: datetime | None = None) -> Principal:
    """The principal of a presented key, or Unauthorized; records the use at most once a minute."""
    now = now or datetime.now(UTC)
    match = _KEY.fullmatch(presented)
    if match is None:
        raise Unauthorized("invalid-api-key", "The API key is malformed.")
    key_id, secret = match.groups()
    with core_transaction(factory) as conn:
        row = conn.execute(select(ApiKey.__table__).where(ApiKey.id == key_id)).first()
        valid = hmac.compare_digest(_hash(key_id, secret), row.secret_hash if row is not None else _DUMMY_HASH)
        if row is None or not valid:
            raise Unauthorized("invalid-api-key", "The API key is not valid.")
        if row.revoked_at is not None:
            raise Unauthorized("invalid-api-key", "The API key has been revoked.")
        if row.expires_at is not None and row.expires_at <= now:
            raise Unauthorized("invalid-api-key", "The API key was rotated and its grace period is over.")
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            conn.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == key_id,
                    or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - LAST_USED_RESOLUTION),
                )
                .values(last_used_at=now)
            )
    return Principal(kind="api_key", subject=key_id, role=Role(row.role), family=row.family_id)
