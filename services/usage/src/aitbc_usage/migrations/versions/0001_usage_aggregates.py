"""Per-minute usage aggregates, the last use of each key, and the stream cursor.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_minutes",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("minute", sa.BigInteger, primary_key=True),  # Unix seconds of the minute start
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("admitted", sa.BigInteger, nullable=False),
        sa.Column("limited", sa.BigInteger, nullable=False),
        sa.Column("status_2xx", sa.BigInteger, nullable=False),
        sa.Column("status_3xx", sa.BigInteger, nullable=False),
        sa.Column("status_4xx", sa.BigInteger, nullable=False),
        sa.Column("status_5xx", sa.BigInteger, nullable=False),
    )
    op.create_index("usage_minutes_by_account", "usage_minutes", ["account_id", "minute"])
    op.create_table(
        "key_last_used",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False, index=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "stream_cursors",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stream_cursors")
    op.drop_table("key_last_used")
    op.drop_index("usage_minutes_by_account", "usage_minutes")
    op.drop_table("usage_minutes")
