"""The delivery outbox: a paid session gets its delivery row in the same transaction as its status change.

So a crash can never leave a payment recorded without the delivery that must follow it, and a duplicate or
late webhook can never create a second one (the session id is the delivery's primary key).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from payment.core.config import DeliveryMode
from payment.core.statements import DirectConnection, Statement
from payment.delivery.models import Delivery
from payment.delivery.status import DeliveryStatus
from payment.onramp.status import SessionStatus
from payment.onramp.store import SessionRecord

__all__ = ["DUE_STATUS", "enqueue_delivery"]

DELIVERIES = cast(Table, Delivery.__table__)

# Both modes wait for Stripe's final word: before `fulfillment_complete` a session can still be rejected, and
# MUSD sent from the treasury cannot be taken back.
DUE_STATUS = SessionStatus.fulfillment_complete

_INSERT = Statement(
    {
        "sqlite": sqlite.insert(DELIVERIES).on_conflict_do_nothing(index_elements=["session_id"]),
        "postgresql": postgresql.insert(DELIVERIES).on_conflict_do_nothing(index_elements=["session_id"]),
    }
)


def enqueue_delivery(
    conn: DirectConnection, row: SessionRecord, *, mode: DeliveryMode, deadline_seconds: float, now: datetime
) -> bool:
    """Create the session's delivery if it is due and has none; True if this call created it."""
    if row.status != DUE_STATUS.value:
        return False
    values: dict[str, Any] = {
        "session_id": row.id,
        "mode": mode.value,
        "status": DeliveryStatus.pending.value,
        "wallet_address": row.wallet_address,
        "confirmations": 0,
        "checks": 0,
        "next_check_at": now,
        "deadline_at": now + timedelta(seconds=deadline_seconds),
        "created_at": now,
        "updated_at": now,
    }
    return conn.execute(_INSERT, values) == 1
