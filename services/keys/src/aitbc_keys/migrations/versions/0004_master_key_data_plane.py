"""Whether an account's master key may call the forwarded routes (account.master_key_data_plane.v1):
every account made before may, as before."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("master_key_data_plane", sa.Boolean, nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("master_key_data_plane")
