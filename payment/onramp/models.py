"""Tables of the onramp domain: sessions and their status history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from payment.core.db import Base, ExactDecimal, UTCDateTime

__all__ = ["OnrampSession", "SessionStatusChange"]


class OnrampSession(Base):
    __tablename__ = "onramp_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    stripe_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # A bearer credential for Stripe's widget; returned only to the session's creator.
    client_secret: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(32), index=True)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)

    wallet_address: Mapped[str] = mapped_column(String(42))
    source_amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    source_currency: Mapped[str] = mapped_column(String(8))
    destination_currency: Mapped[str] = mapped_column(String(16))
    destination_network: Mapped[str] = mapped_column(String(32))
    customer_ip_address: Mapped[str | None] = mapped_column(String(45))

    # From Stripe's transaction_details, filled as the session progresses.
    transaction_id: Mapped[str | None] = mapped_column(String(128))
    destination_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    network_fee_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    transaction_fee_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    # sha256 of (scope, client Idempotency-Key) and of the normalised request body.
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    # While status is `creating`: when the current attempt to create it at Stripe started (a lease).
    creation_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # Position of the last applied Stripe snapshot (see onramp.status).
    last_event_id: Mapped[str] = mapped_column(String(255), default="")
    last_event_created: Mapped[int] = mapped_column(BigInteger, default=0)

    # W3C traceparent of the request that created the session: its webhooks' spans link back to it.
    creation_traceparent: Mapped[str | None] = mapped_column(String(55))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    # The destination amount of the quote the dApp showed the buyer before creating the session (GET .../quotes),
    # when it passed one: compared with Stripe's destination_amount once fulfilled (quote slippage). Last, as
    # migration 0006 added it (and as store.SessionRecord lists it).
    quoted_destination_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal())

    __table_args__ = (
        Index("ix_onramp_sessions_created_at_id", "created_at", "id"),
        Index("ix_onramp_sessions_wallet_created", "wallet_address", "created_at", "id"),
    )


class SessionStatusChange(Base):
    __tablename__ = "onramp_session_status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("onramp_sessions.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))  # api | webhook | recovery
    event_id: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
