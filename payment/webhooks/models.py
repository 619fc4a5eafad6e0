"""The record of every Stripe webhook event received (the deduplication key is Stripe's event id)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payment.core.db import Base, UTCDateTime

__all__ = ["WebhookEvent"]


class WebhookEvent(Base):
    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # Stripe's evt_... id
    type: Mapped[str] = mapped_column(String(128))
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    stripe_created: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # applied | out_of_order | unknown_session | ignored
    outcome: Mapped[str] = mapped_column(String(32))
    session_id: Mapped[str | None] = mapped_column(String(36))
    stripe_object_id: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    # webhook (delivered to our endpoint) | reconcile (found by reconciliation's List Events)
    origin: Mapped[str] = mapped_column(String(16), default="webhook", server_default="webhook")

    __table_args__ = (Index("ix_webhook_events_processed_at", "processed_at"),)
