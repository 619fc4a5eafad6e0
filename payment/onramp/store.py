"""Reads and writes of onramp sessions on the hot paths (creation and webhooks), as prepared Core statements.

The ORM's unit of work costs about a millisecond per request (state tracking, flush planning), and building a
statement per call costs half of that again; these paths do a handful of known reads and writes, so they run
statements built once, with bound parameters, which SQLAlchemy compiles once. Reads for the API keep using the
ORM models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, bindparam, delete, insert, select, update

from payment.onramp.models import OnrampSession, SessionStatusChange
from payment.onramp.status import SessionStatus

__all__ = [
    "SESSIONS",
    "add_status_change",
    "delete_if_creating",
    "insert_session",
    "load_by_id",
    "load_by_idempotency_key",
    "load_for_snapshot",
    "update_session",
]

SESSIONS = cast(Table, OnrampSession.__table__)
CHANGES = cast(Table, SessionStatusChange.__table__)
_c = SESSIONS.c

_BY_ID = select(SESSIONS).where(_c.id == bindparam("session_id"))
_BY_ID_LOCKED = _BY_ID.with_for_update()
_BY_KEY = select(SESSIONS).where(_c.idempotency_key == bindparam("key"))
_BY_STRIPE_ID = select(SESSIONS).where(_c.stripe_session_id == bindparam("stripe_id")).limit(1)
# A webhook may outrun the create response: then the row is found by the id we put in Stripe's metadata.
_BY_STRIPE_ID_OR_OURS = (
    select(SESSIONS)
    .where(
        (_c.stripe_session_id == bindparam("stripe_id"))
        | ((_c.id == bindparam("session_id")) & _c.stripe_session_id.is_(None))
    )
    .limit(1)
)
_BY_STRIPE_ID_LOCKED = _BY_STRIPE_ID.with_for_update()
_BY_STRIPE_ID_OR_OURS_LOCKED = _BY_STRIPE_ID_OR_OURS.with_for_update()
_INSERT = insert(SESSIONS)
_UPDATE = update(SESSIONS).where(_c.id == bindparam("_session_id"))
_INSERT_CHANGE = insert(CHANGES)
_DELETE_CREATING = delete(SESSIONS).where(
    _c.id == bindparam("session_id"),
    _c.status == SessionStatus.creating.value,
    _c.creation_started_at == bindparam("lease"),
)


def _one(conn: Connection, query: Select[Any], params: dict[str, Any]) -> OnrampSession | None:
    row = conn.execute(query, params).mappings().first()
    return OnrampSession(**row) if row is not None else None


def load_by_id(conn: Connection, session_id: str, *, for_update: bool = False) -> OnrampSession | None:
    """A detached copy of the session; row-locked on PostgreSQL when `for_update`."""
    return _one(conn, _BY_ID_LOCKED if for_update else _BY_ID, {"session_id": session_id})


def load_by_idempotency_key(conn: Connection, key_hash: str) -> OnrampSession | None:
    return _one(conn, _BY_KEY, {"key": key_hash})


def load_for_snapshot(conn: Connection, stripe_id: str, our_id: str | None) -> OnrampSession | None:
    """The session a Stripe snapshot describes, row-locked on PostgreSQL so concurrent events serialise."""
    if our_id is None:
        return _one(conn, _BY_STRIPE_ID_LOCKED, {"stripe_id": stripe_id})
    return _one(conn, _BY_STRIPE_ID_OR_OURS_LOCKED, {"stripe_id": stripe_id, "session_id": our_id})


def insert_session(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(_INSERT, values)


def update_session(conn: Connection, session_id: str, changes: dict[str, Any]) -> None:
    if changes:
        conn.execute(_UPDATE, {"_session_id": session_id, **changes})


def add_status_change(
    conn: Connection,
    *,
    session_id: str,
    from_status: SessionStatus,
    to_status: SessionStatus,
    source: str,
    event_id: str | None,
    at: datetime,
) -> None:
    conn.execute(
        _INSERT_CHANGE,
        {
            "session_id": session_id,
            "from_status": from_status.value,
            "to_status": to_status.value,
            "source": source,
            "event_id": event_id,
            "occurred_at": at,
        },
    )


def delete_if_creating(conn: Connection, session_id: str, lease: datetime) -> bool:
    """Delete a row still being created under this lease; False if another attempt has taken it over."""
    return bool(conn.execute(_DELETE_CREATING, {"session_id": session_id, "lease": lease}).rowcount)
