"""deliveries, treasury transactions and nonces, worker leases

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 07:11:14.306350
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import payment.core.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "treasury_nonces",
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("next_nonce", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_treasury_nonces")),
    )
    op.create_table(
        "worker_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_leases")),
    )
    op.create_table(
        "deliveries",
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("wallet_address", sa.String(length=42), nullable=False),
        sa.Column("expected_amount", payment.core.db.ExactDecimal(), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("confirmations", sa.Integer(), nullable=False),
        sa.Column("delivered_amount", payment.core.db.ExactDecimal(), nullable=True),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("next_check_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("verified_at", payment.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("from_address", sa.String(length=42), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("committed_at", payment.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["onramp_sessions.id"], name=op.f("fk_deliveries_session_id_onramp_sessions")
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_deliveries")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_status_next_check_at", ["status", "next_check_at"], unique=False)

    op.create_table(
        "delivery_transactions",
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("gas_price", payment.core.db.ExactDecimal(), nullable=False),
        sa.Column("raw_tx", sa.Text(), nullable=False),
        sa.Column("created_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("broadcast_at", payment.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"], ["deliveries.session_id"], name=op.f("fk_delivery_transactions_session_id_deliveries")
        ),
        sa.PrimaryKeyConstraint("tx_hash", name=op.f("pk_delivery_transactions")),
    )
    with op.batch_alter_table("delivery_transactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_transactions_session_id"), ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_transactions_session_id"))

    op.drop_table("delivery_transactions")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_status_next_check_at")

    op.drop_table("deliveries")
    op.drop_table("worker_leases")
    op.drop_table("treasury_nonces")
