"""session creation traceparent

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 05:05:59.934934
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("onramp_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("creation_traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("onramp_sessions", schema=None) as batch_op:
        batch_op.drop_column("creation_traceparent")
