"""The state of Stripe reconciliation that must survive restarts: the events cursor of the last pass."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from payment.core.db import Base, UTCDateTime

__all__ = ["ReconcileState"]


class ReconcileState(Base):
    """One row per reconciliation (name "stripe"): where the next pass's List Events starts."""

    __tablename__ = "reconcile_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Stripe `created` (unix seconds) the next pass lists events from (`created[gte]`).
    events_cursor: Mapped[int] = mapped_column(BigInteger)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
