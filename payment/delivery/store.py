"""Reads and writes of deliveries, each a short transaction (the worker calls them through `run_db`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from payment.core.db import core_transaction
from payment.delivery.models import Delivery, DeliveryTransaction, TreasuryNonce, WorkerLease
from payment.delivery.status import RECHECKED_STATUSES, DeliveryStatus
from payment.onramp.models import OnrampSession

__all__ = [
    "FAR_FUTURE",
    "Attempt",
    "ChainAhead",
    "DueDelivery",
    "acquire_lease",
    "attempts_of",
    "committed_today",
    "deliveries_for",
    "due_deliveries",
    "mark_broadcast",
    "record_attempt",
    "release_lease",
    "reserve_nonce",
    "save_check",
]

DELIVERIES = cast(Table, Delivery.__table__)
ATTEMPTS = cast(Table, DeliveryTransaction.__table__)
NONCES = cast(Table, TreasuryNonce.__table__)
LEASES = cast(Table, WorkerLease.__table__)
SESSIONS = cast(Table, OnrampSession.__table__)
_d = DELIVERIES.c

# "Never again on its own": a delivery past its deadline waits for an operator.
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DueDelivery:
    session_id: str
    mode: str
    status: str
    wallet_address: str
    expected_amount: Decimal | None
    tx_hash: str | None
    checks: int
    deadline_at: datetime
    created_at: datetime
    from_address: str | None
    nonce: int | None
    # From the session: Stripe's transaction id (onramp mode) and the MUSD amount owed after fees.
    transaction_id: str | None
    destination_amount: Decimal | None


@dataclass(frozen=True)
class Attempt:
    tx_hash: str
    nonce: int
    gas_price: int
    raw_tx: str
    created_at: datetime
    broadcast_at: datetime | None


_DUE = (
    select(
        _d.session_id,
        _d.mode,
        _d.status,
        _d.wallet_address,
        _d.expected_amount,
        _d.tx_hash,
        _d.checks,
        _d.deadline_at,
        _d.created_at,
        _d.from_address,
        _d.nonce,
        SESSIONS.c.transaction_id,
        SESSIONS.c.destination_amount,
    )
    .join(SESSIONS, SESSIONS.c.id == _d.session_id)
    .where(_d.status.in_([s.value for s in RECHECKED_STATUSES]))
    # Transfers already holding a nonce first, in nonce order: a lower nonce left unsent blocks every later one.
    .order_by(_d.nonce.is_(None), _d.nonce, _d.next_check_at, _d.session_id)
)


def due_deliveries(factory: sessionmaker[Session], *, now: datetime, limit: int) -> list[DueDelivery]:
    with factory() as db:
        rows = db.execute(_DUE.where(_d.next_check_at <= now).limit(limit)).mappings().all()
    return [DueDelivery(**row) for row in rows]


def deliveries_for(factory: sessionmaker[Session], session_ids: list[str]) -> dict[str, Delivery]:
    if not session_ids:
        return {}
    with factory() as db:
        rows = db.scalars(select(Delivery).where(Delivery.session_id.in_(session_ids))).all()
        db.expunge_all()
    return {row.session_id: row for row in rows}


def save_check(
    factory: sessionmaker[Session],
    *,
    session_id: str,
    status: DeliveryStatus,
    reason: str | None,
    next_check_at: datetime,
    now: datetime,
    expected_from: tuple[str, ...] = (),
    **columns: Any,
) -> bool:
    """Record one check's outcome; False if the delivery had meanwhile left `expected_from` (an operator acted)."""
    values = {"status": status.value, "reason": reason, "next_check_at": next_check_at, "updated_at": now}
    values.update(columns)
    statement = update(DELIVERIES).where(_d.session_id == session_id).values(checks=_d.checks + 1, **values)
    if expected_from:
        statement = statement.where(_d.status.in_(expected_from))
    with core_transaction(factory) as conn:
        return bool(conn.execute(statement).rowcount)


def committed_today(factory: sessionmaker[Session], *, now: datetime) -> tuple[Decimal, Decimal]:
    """MUSD the treasury committed since 00:00 UTC, and MUSD committed but not yet verified (in flight).

    Summed here, not in SQL: SQLite would add the amounts as floats.
    """
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    treasury = and_(_d.mode == "treasury", _d.committed_at.is_not(None), _d.status != DeliveryStatus.failed.value)
    with factory() as db:
        today = db.scalars(select(_d.expected_amount).where(treasury, _d.committed_at >= day)).all()
        in_flight = db.scalars(
            select(_d.expected_amount).where(treasury, _d.status != DeliveryStatus.verified.value)
        ).all()
    return sum((a for a in today if a is not None), Decimal(0)), sum((a for a in in_flight if a), Decimal(0))


class ChainAhead(Exception):
    """The treasury's nonce on chain is ahead of every nonce the database reserved: transactions were sent that
    the database does not know (it was restored, or the key was used elsewhere). Nothing may be sent until the
    chain has been read back (payment.delivery.recovery)."""


def reserve_nonce(
    factory: sessionmaker[Session],
    *,
    session_id: str,
    address: str,
    chain_pending_nonce: int,
    amount: Decimal,
    now: datetime,
    refuse_if_chain_ahead: bool = False,
) -> int | None:
    """Give the delivery the treasury's next nonce, in one transaction with its amount; None if it had one.

    `refuse_if_chain_ahead`: raise ChainAhead rather than reserve when the chain's pending nonce is past the
    stored next nonce (our own sends are reserved here before they are signed, so only forgotten ones can be).
    """
    with core_transaction(factory) as conn:
        current = conn.execute(
            select(NONCES.c.next_nonce).where(NONCES.c.address == address).with_for_update()
        ).scalar_one_or_none()
        if refuse_if_chain_ahead and chain_pending_nonce > (current or 0):
            raise ChainAhead(
                f"the treasury's nonce on chain ({chain_pending_nonce}) is ahead of the database's ({current})"
            )
        # The chain may be ahead (the key was used elsewhere); never behind what we reserved (unsent nonces).
        nonce = max(current if current is not None else 0, chain_pending_nonce)
        claimed = conn.execute(
            update(DELIVERIES)
            .where(_d.session_id == session_id, _d.nonce.is_(None))
            .values(nonce=nonce, from_address=address, expected_amount=amount, committed_at=now, updated_at=now)
        ).rowcount
        if not claimed:
            return None
        if current is None:
            conn.execute(insert(NONCES).values(address=address, next_nonce=nonce + 1, updated_at=now))
        else:
            conn.execute(update(NONCES).where(NONCES.c.address == address).values(next_nonce=nonce + 1, updated_at=now))
    return nonce


def attempts_of(factory: sessionmaker[Session], session_id: str) -> list[Attempt]:
    with factory() as db:
        rows = db.execute(
            select(ATTEMPTS).where(ATTEMPTS.c.session_id == session_id).order_by(ATTEMPTS.c.created_at)
        ).mappings()
        return [
            Attempt(
                tx_hash=row["tx_hash"],
                nonce=row["nonce"],
                gas_price=int(row["gas_price"]),
                raw_tx=row["raw_tx"],
                created_at=row["created_at"],
                broadcast_at=row["broadcast_at"],
            )
            for row in rows
        ]


def record_attempt(factory: sessionmaker[Session], *, session_id: str, attempt: Attempt) -> None:
    """Store a signed transaction before it is broadcast: after a crash, we know every hash that may be mined."""
    with core_transaction(factory) as conn:
        conn.execute(
            insert(ATTEMPTS).values(
                tx_hash=attempt.tx_hash,
                session_id=session_id,
                nonce=attempt.nonce,
                gas_price=Decimal(attempt.gas_price),
                raw_tx=attempt.raw_tx,
                created_at=attempt.created_at,
                broadcast_at=None,
            )
        )


def mark_broadcast(factory: sessionmaker[Session], *, tx_hash: str, now: datetime) -> None:
    with core_transaction(factory) as conn:
        conn.execute(update(ATTEMPTS).where(ATTEMPTS.c.tx_hash == tx_hash).values(broadcast_at=now))


def acquire_lease(factory: sessionmaker[Session], *, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
    """Take or renew the lease `name` for `holder`; False while another holder's lease runs."""
    expires = now + ttl
    try:
        with core_transaction(factory) as conn:
            taken = conn.execute(
                update(LEASES)
                .where(LEASES.c.name == name, or_(LEASES.c.holder == holder, LEASES.c.expires_at <= now))
                .values(holder=holder, expires_at=expires)
            ).rowcount
            if taken:
                return True
            exists = conn.execute(select(func.count()).select_from(LEASES).where(LEASES.c.name == name)).scalar_one()
            if exists:
                return False
            conn.execute(insert(LEASES).values(name=name, holder=holder, expires_at=expires))
            return True
    except IntegrityError:  # another process inserted the lease first
        return False


def release_lease(factory: sessionmaker[Session], *, name: str, holder: str) -> None:
    with core_transaction(factory) as conn:
        conn.execute(LEASES.delete().where(and_(LEASES.c.name == name, LEASES.c.holder == holder)))
