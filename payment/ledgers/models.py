"""The table of ledger discrepancies: one row per disagreement found, open until a later check no longer finds
it (or an operator explains it)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payment.core.db import Base, ExactDecimal, UTCDateTime

__all__ = ["LedgerDiscrepancy"]


class LedgerDiscrepancy(Base):
    __tablename__ = "ledger_discrepancies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))  # see ledgers.findings.Kind
    # What it is about: a session, and (chain kinds) the transaction; `subject` is the key a check finds it by.
    session_id: Mapped[str | None] = mapped_column(String(36))
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    subject: Mapped[str] = mapped_column(String(160))
    currency: Mapped[str] = mapped_column(String(16))
    expected_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    actual_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    detail: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolution: Mapped[str | None] = mapped_column(String(255))  # "no longer found", or an operator's note

    __table_args__ = (Index("ix_ledger_discrepancies_kind_subject", "kind", "subject", "resolved_at"),)
