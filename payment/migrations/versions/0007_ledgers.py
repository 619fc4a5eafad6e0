"""ledger discrepancies: disagreements between Stripe, our database and the chain

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 13:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import payment.core.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_discrepancies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("subject", sa.String(length=160), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("expected_amount", payment.core.db.ExactDecimal(), nullable=True),
        sa.Column("actual_amount", payment.core.db.ExactDecimal(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("first_seen_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", payment.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_discrepancies")),
    )
    with op.batch_alter_table("ledger_discrepancies", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_discrepancies_kind_subject", ["kind", "subject", "resolved_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ledger_discrepancies", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_discrepancies_kind_subject")
    op.drop_table("ledger_discrepancies")
