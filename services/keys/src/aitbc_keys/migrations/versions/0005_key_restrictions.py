"""A key's restrictions in the api_keys read model (key.restricted.v1): scopes and allowed_ips
as space-separated words, and shadow; every key made before restricts nothing, as before."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("scopes", sa.Text, nullable=False, server_default=""))
    op.add_column("api_keys", sa.Column("allowed_ips", sa.Text, nullable=False, server_default=""))
    op.add_column(
        "api_keys", sa.Column("shadow", sa.Boolean, nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("shadow")
        batch.drop_column("allowed_ips")
        batch.drop_column("scopes")
