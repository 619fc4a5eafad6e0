"""restore markers: a restored database says so, and treasury sends wait for the chain to be read back

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import payment.core.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "restore_markers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("restored_at", payment.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("backup_id", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("resolved_at", payment.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restore_markers")),
    )
    with op.batch_alter_table("restore_markers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_restore_markers_resolved_at"), ["resolved_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("restore_markers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_restore_markers_resolved_at"))
    op.drop_table("restore_markers")
