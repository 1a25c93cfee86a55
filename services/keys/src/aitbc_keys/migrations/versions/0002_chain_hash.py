"""The hash chain: each event's chain hash, filled in for the events already there."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aitbc_contracts.chain import GENESIS, link

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BATCH = 1000

events = sa.table(
    "events",
    sa.column("position", sa.BigInteger),
    sa.column("data", sa.Text),
    sa.column("chain_hash", sa.String),
)


def upgrade() -> None:
    op.add_column(
        "events", sa.Column("chain_hash", sa.String(64), nullable=False, server_default="")
    )
    # Events appended before the chain existed carry no prev_hash in their bodies; the rule
    # hashes the previous hash in anyway, so they are chained from here on like any other.
    bind = op.get_bind()
    head, last = GENESIS, 0
    while True:
        rows = bind.execute(
            sa.select(events.c.position, events.c.data)
            .where(events.c.position > last)
            .order_by(events.c.position)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        for position, data in rows:
            head = link(head, data.encode())
            bind.execute(
                events.update().where(events.c.position == position).values(chain_hash=head)
            )
            last = position


def downgrade() -> None:
    op.drop_column("events", "chain_hash")
