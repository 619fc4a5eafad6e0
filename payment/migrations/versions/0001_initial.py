"""initial schema: onramp sessions, status history, webhook events

Revision ID: 0001
Revises:
Create Date: 2026-11-26 04:33:41.505361
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import payment.core.db

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "onramp_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("stripe_session_id", sa.String(length=255), nullable=True),
        sa.Column("client_secret", sa.String(length=512), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("wallet_address", sa.String(length=42), nullable=False),
        sa.Column("source_amount", payment.core.db.ExactDecimal(), nullable=False),
        sa.Column("source_currency", sa.String(length=8), nullable=False),
        sa.Column("destination_currency", sa.String(length=16), nullable=False),
        sa.Column("destination_network", sa.String(length=32), nullable=False),
        sa.Column("customer_ip_address", sa.String(length=45), nullable=True),
        sa.Column("transaction_id", sa.String(length=128), nullable=True),
        sa.Column("destination_amount", payment.core.db.ExactDecimal(), nullable=True),
        sa.Column("network_fee_amount", payment.core.db.ExactDecimal(), nullable=True),
        sa.Column("transaction_fee_amount", payment.core.db.ExactDecimal(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("creation_started_at", payment.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.String(length=255), nullable=False),
        sa.Column("last_event_created", sa.BigInteger(), nullable=False),
        sa.Column("created_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_onramp_sessions")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_onramp_sessions_idempotency_key")),
        sa.UniqueConstraint("stripe_session_id", name=op.f("uq_onramp_sessions_stripe_session_id")),
    )
    with op.batch_alter_table("onramp_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_onramp_sessions_created_at_id", ["created_at", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_onramp_sessions_status"), ["status"], unique=False)
        batch_op.create_index("ix_onramp_sessions_wallet_created", ["wallet_address", "created_at", "id"], unique=False)

    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("stripe_created", sa.BigInteger(), nullable=False),
        sa.Column("received_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", payment.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("stripe_object_id", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
    )
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_events_processed_at", ["processed_at"], unique=False)

    op.create_table(
        "onramp_session_status_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("from_status", sa.String(length=32), nullable=True),
        sa.Column("to_status", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("occurred_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["onramp_sessions.id"],
            name=op.f("fk_onramp_session_status_changes_session_id_onramp_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_onramp_session_status_changes")),
    )
    with op.batch_alter_table("onramp_session_status_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_onramp_session_status_changes_session_id"), ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("onramp_session_status_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_onramp_session_status_changes_session_id"))

    op.drop_table("onramp_session_status_changes")
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_events_processed_at")

    op.drop_table("webhook_events")
    with op.batch_alter_table("onramp_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_onramp_sessions_wallet_created")
        batch_op.drop_index(batch_op.f("ix_onramp_sessions_status"))
        batch_op.drop_index("ix_onramp_sessions_created_at_id")

    op.drop_table("onramp_sessions")
