"""Stripe reconciliation: the events cursor of the last pass, and where each recorded event came from

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import payment.core.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconcile_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("events_cursor", sa.BigInteger(), nullable=False),
        sa.Column("last_success_at", payment.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_reconcile_state")),
    )
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin", sa.String(length=16), nullable=False, server_default="webhook"))


def downgrade() -> None:
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_column("origin")
    op.drop_table("reconcile_state")
