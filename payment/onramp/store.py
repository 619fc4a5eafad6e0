"""Reads and writes of onramp sessions on the hot paths (creation and webhooks), as prepared statements.

The ORM's unit of work costs about a millisecond per request (state tracking, flush planning), and even a Core
statement on a `Connection` costs a tenth of one; these paths do a handful of known reads and writes, so they
run statements built once, directly on the driver (payment/core/statements.py). Reads for the API keep using
the ORM models.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update

from payment.core.statements import DirectConnection, Statement
from payment.onramp.models import OnrampSession, SessionStatusChange
from payment.onramp.status import SessionStatus

__all__ = [
    "SESSIONS",
    "SessionRecord",
    "add_status_change",
    "claim_creation",
    "delete_if_creating",
    "insert_session",
    "load_by_id",
    "load_by_idempotency_key",
    "load_for_snapshot",
    "stale_creations",
    "update_session",
]


@dataclass(slots=True)
class SessionRecord:
    """An onramp session as the services read and change it: a plain copy of its row (`onramp_sessions`, see
    models.OnrampSession for what each column means). Not an ORM instance: building one of those costs an
    attribute event per column, a tenth of a webhook's handling."""

    id: str
    stripe_session_id: str | None
    client_secret: str | None
    status: str
    livemode: bool
    wallet_address: str
    source_amount: Decimal
    source_currency: str
    destination_currency: str
    destination_network: str
    customer_ip_address: str | None
    transaction_id: str | None
    destination_amount: Decimal | None
    network_fee_amount: Decimal | None
    transaction_fee_amount: Decimal | None
    idempotency_key: str | None
    request_fingerprint: str
    creation_started_at: datetime | None
    last_event_id: str
    last_event_created: int
    creation_traceparent: str | None
    created_at: datetime
    updated_at: datetime
    quoted_destination_amount: Decimal | None = None  # the quote the dApp showed (models.OnrampSession)


SESSIONS = cast(Table, OnrampSession.__table__)
CHANGES = cast(Table, SessionStatusChange.__table__)
_c = SESSIONS.c

_BY_ID = select(SESSIONS).where(_c.id == bindparam("session_id"))
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
BY_ID = Statement(_BY_ID)
BY_ID_LOCKED = Statement(_BY_ID.with_for_update())
BY_KEY = Statement(select(SESSIONS).where(_c.idempotency_key == bindparam("key")))
BY_STRIPE_ID_LOCKED = Statement(_BY_STRIPE_ID.with_for_update())
BY_STRIPE_ID_OR_OURS_LOCKED = Statement(_BY_STRIPE_ID_OR_OURS.with_for_update())
INSERT = Statement(insert(SESSIONS))
UPDATE = Statement(update(SESSIONS).where(_c.id == bindparam("_session_id")))
INSERT_CHANGE = Statement(insert(CHANGES))
DELETE_CREATING = Statement(
    delete(SESSIONS).where(
        _c.id == bindparam("session_id"),
        _c.status == SessionStatus.creating.value,
        _c.creation_started_at == bindparam("lease"),
    )
)
CLAIM_CREATION = Statement(
    update(SESSIONS)
    .where(
        _c.id == bindparam("session_id"),
        _c.status == SessionStatus.creating.value,
        _c.creation_started_at.is_not_distinct_from(bindparam("started")),
    )
    .values(creation_started_at=bindparam("now"))
)
STALE_CREATIONS = Statement(
    select(SESSIONS)
    .where(_c.status == SessionStatus.creating.value, _c.creation_started_at < bindparam("cutoff"))
    .limit(bindparam("limit"))
)


def _one(conn: DirectConnection, query: Statement, params: dict[str, Any]) -> SessionRecord | None:
    row = conn.first(query, params)
    return SessionRecord(**row) if row is not None else None


def load_by_id(conn: DirectConnection, session_id: str, *, for_update: bool = False) -> SessionRecord | None:
    """A detached copy of the session; row-locked on PostgreSQL when `for_update`."""
    return _one(conn, BY_ID_LOCKED if for_update else BY_ID, {"session_id": session_id})


def load_by_idempotency_key(conn: DirectConnection, key_hash: str) -> SessionRecord | None:
    return _one(conn, BY_KEY, {"key": key_hash})


def load_for_snapshot(conn: DirectConnection, stripe_id: str, our_id: str | None) -> SessionRecord | None:
    """The session a Stripe snapshot describes, row-locked on PostgreSQL so concurrent events serialise."""
    if our_id is None:
        return _one(conn, BY_STRIPE_ID_LOCKED, {"stripe_id": stripe_id})
    return _one(conn, BY_STRIPE_ID_OR_OURS_LOCKED, {"stripe_id": stripe_id, "session_id": our_id})


def stale_creations(conn: DirectConnection, cutoff: datetime, limit: int) -> list[SessionRecord]:
    """Rows still `creating` whose lease started before `cutoff`: their request died mid-way."""
    return [SessionRecord(**row) for row in conn.all(STALE_CREATIONS, {"cutoff": cutoff, "limit": limit})]


def insert_session(conn: DirectConnection, values: dict[str, Any]) -> None:
    conn.execute(INSERT, values)


def update_session(conn: DirectConnection, session_id: str, changes: dict[str, Any]) -> None:
    if changes:
        conn.execute(UPDATE, {"_session_id": session_id, **changes})


def claim_creation(conn: DirectConnection, session_id: str, started: datetime | None, now: datetime) -> bool:
    """Take over the creation lease of a row whose request died; False if another request took it first."""
    return conn.execute(CLAIM_CREATION, {"session_id": session_id, "started": started, "now": now}) == 1


def add_status_change(
    conn: DirectConnection,
    *,
    session_id: str,
    from_status: SessionStatus,
    to_status: SessionStatus,
    source: str,
    event_id: str | None,
    at: datetime,
) -> None:
    conn.execute(
        INSERT_CHANGE,
        {
            "session_id": session_id,
            "from_status": from_status.value,
            "to_status": to_status.value,
            "source": source,
            "event_id": event_id,
            "occurred_at": at,
        },
    )


def delete_if_creating(conn: DirectConnection, session_id: str, lease: datetime) -> bool:
    """Delete a row still being created under this lease; False if another attempt has taken it over."""
    return conn.execute(DELETE_CREATING, {"session_id": session_id, "lease": lease}) == 1
