"""What operators do to deliveries: re-run a verification, retry a held or failed one. Each action is
checked against the delivery's state, applied in one transaction and written to the audit log with it."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session, sessionmaker

from payment.auth import audit
from payment.core.config import DeliveryMode, Settings
from payment.core.db import core_transaction
from payment.core.problems import Conflict, NotFound
from payment.delivery.models import Delivery, DeliveryTransaction
from payment.delivery.status import DeliveryStatus
from payment.onramp.models import OnrampSession

__all__ = ["Action", "reopen_delivery"]

DELIVERIES = cast(Table, Delivery.__table__)
ATTEMPTS = cast(Table, DeliveryTransaction.__table__)
_d = DELIVERIES.c


class Action(StrEnum):
    verify = "verify"  # look at the chain again, whatever the status; never sends anything
    retry = "retry"  # treasury: send a held delivery now, or send again after a reverted transfer


def reopen_delivery(
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    session_id: str,
    action: Action,
    actor: audit.Actor,
    now: datetime,
) -> Delivery:
    """Make the delivery due now with a fresh deadline; raises NotFound or Conflict when the action does not
    apply. A verified delivery stays verified (it is only looked at again)."""
    with core_transaction(factory) as conn:
        row = conn.execute(select(DELIVERIES).where(_d.session_id == session_id).with_for_update()).mappings().first()
        if row is None:
            exists = conn.execute(select(OnrampSession.id).where(OnrampSession.id == session_id)).first()
            if exists is None:
                raise NotFound(f"No onramp session {session_id}.")
            raise Conflict("no-delivery", "The session is not fulfilled yet: it has no delivery.")
        status = DeliveryStatus(row["status"])
        values: dict[str, Any] = {
            "next_check_at": now,
            "deadline_at": now + timedelta(seconds=settings.delivery_deadline_seconds),
            "updated_at": now,
        }
        if action is Action.retry:
            if row["mode"] != DeliveryMode.treasury.value:
                raise Conflict(
                    "delivery-not-retryable", "Stripe delivers in onramp mode; use verify to look at the chain again."
                )
            if status not in (DeliveryStatus.held, DeliveryStatus.failed):
                raise Conflict(
                    "delivery-not-retryable",
                    f"Only a held or failed treasury delivery can be retried; this one is {status.value}.",
                )
            if status is DeliveryStatus.failed and row["nonce"] is not None:
                # Reverted on chain: nothing moved and the nonce is spent, so a new transfer (new nonce) is safe.
                values.update(nonce=None, from_address=None, committed_at=None, tx_hash=None, block_number=None)
                conn.execute(ATTEMPTS.delete().where(ATTEMPTS.c.session_id == session_id))
        if status is not DeliveryStatus.verified:
            values.update(status=DeliveryStatus.pending.value, reason=f"{action.value} requested by an operator")
        conn.execute(update(DELIVERIES).where(_d.session_id == session_id).values(**values))
        audit.record(
            conn,
            actor=actor,
            action=f"delivery.{action.value}",
            target=session_id,
            detail={"from_status": status.value, "mode": row["mode"]},
            at=now,
        )
    with factory() as db:
        delivery = db.get(Delivery, session_id)
        assert delivery is not None
        db.expunge(delivery)
        return delivery
