"""Signed checkpoints of the key event log (aitbc_contracts.checkpoints), as published."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("number", Position, primary_key=True, autoincrement=False),
        sa.Column("position", Position, nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("checkpoints")
