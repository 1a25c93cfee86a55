"""Requests admitted in shadow mode that their limits would have refused, per minute.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_minutes") as batch:
        batch.add_column(
            sa.Column("shadow_limited", sa.BigInteger, nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_minutes") as batch:
        batch.drop_column("shadow_limited")
