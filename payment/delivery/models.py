"""Tables of MUSD delivery: one delivery per paid session, the treasury's signed transactions, its nonces,
and the leases that keep a single worker acting at a time."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payment.core.db import Base, ExactDecimal, UTCDateTime

__all__ = ["Delivery", "DeliveryTransaction", "RestoreMarker", "TreasuryNonce", "WorkerLease"]


class Delivery(Base):
    """How the MUSD of one paid session reached (or did not reach) its wallet.

    The row is written in the same transaction as the status change that makes it due (the outbox), so a
    payment can never be recorded without its delivery.
    """

    __tablename__ = "deliveries"

    session_id: Mapped[str] = mapped_column(String(36), ForeignKey("onramp_sessions.id"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))  # onramp | treasury
    status: Mapped[str] = mapped_column(String(16))  # see delivery.status.DeliveryStatus
    reason: Mapped[str | None] = mapped_column(String(255))
    wallet_address: Mapped[str] = mapped_column(String(42))
    expected_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal())  # MUSD, after fees
    tx_hash: Mapped[str | None] = mapped_column(String(66))  # the transfer that delivered (or was checked)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    confirmations: Mapped[int] = mapped_column(Integer, default=0)
    delivered_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    checks: Mapped[int] = mapped_column(Integer, default=0)
    next_check_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Treasury mode: the account and nonce reserved for this transfer; every signed attempt uses this nonce,
    # so at most one of them can ever be mined.
    from_address: Mapped[str | None] = mapped_column(String(42))
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # nonce reserved: counts to the cap
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_deliveries_status_next_check_at", "status", "next_check_at"),)


class DeliveryTransaction(Base):
    """A signed treasury transfer, recorded before it is broadcast (a replacement adds a row, same nonce)."""

    __tablename__ = "delivery_transactions"

    tx_hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(36), ForeignKey("deliveries.session_id"), index=True)
    nonce: Mapped[int] = mapped_column(BigInteger)
    gas_price: Mapped[Decimal] = mapped_column(ExactDecimal())  # wei
    raw_tx: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    broadcast_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TreasuryNonce(Base):
    """The next nonce of a treasury account, reserved in the database before anything is signed."""

    __tablename__ = "treasury_nonces"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    next_nonce: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RestoreMarker(Base):
    """A database restore: written by the restore tool into the restored database (`recovery.record_restore`).

    While one is unresolved the delivery worker sends nothing from the treasury: it first rebuilds, from the
    chain, the deliveries the restore forgot (payment.delivery.recovery), then sets `resolved_at`.
    """

    __tablename__ = "restore_markers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    restored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    backup_id: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text, default="")
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class WorkerLease(Base):
    """A named lease: the one worker (of several processes or hosts) allowed to act until it expires."""

    __tablename__ = "worker_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
