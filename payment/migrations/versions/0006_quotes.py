"""the quote a dApp showed before creating a session

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import payment.core.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("onramp_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quoted_destination_amount", payment.core.db.ExactDecimal(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("onramp_sessions", schema=None) as batch_op:
        batch_op.drop_column("quoted_destination_amount")
