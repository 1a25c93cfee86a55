"""The checkpoints table: each signed checkpoint, stored before it is published, and the
event store's chain recomputed from the last one (what a new checkpoint may vouch for)."""

from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import checkpoints as wire
from aitbc_contracts.chain import GENESIS, Entry, Verifier
from aitbc_keys import store
from aitbc_keys.schema import checkpoints

BATCH = 1000


class Last(NamedTuple):
    """The newest checkpoint (number 0 at position 0: none yet)."""

    number: int
    position: int
    chain_hash: str


async def last(engine: AsyncEngine) -> Last:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(checkpoints.c.number, checkpoints.c.position, checkpoints.c.chain_hash)
                .order_by(checkpoints.c.number.desc())
                .limit(1)
            )
        ).first()
    return Last(int(row.number), int(row.position), row.chain_hash) if row else Last(0, 0, GENESIS)


async def add(engine: AsyncEngine, checkpoint: wire.Checkpoint) -> bool:
    """Store a checkpoint; False if another keys service stored one with its number first."""
    row = {
        "number": checkpoint.number,
        "position": checkpoint.position,
        "chain_hash": checkpoint.chain_hash,
        "data": wire.encode(checkpoint).decode(),
    }
    try:
        async with engine.begin() as conn:
            await conn.execute(checkpoints.insert(), row)
    except IntegrityError:
        return False
    return True


async def after(engine: AsyncEngine, number: int, limit: int = 100) -> list[tuple[int, bytes]]:
    """The stored checkpoints after `number`, oldest first: (number, bytes as published)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(checkpoints.c.number, checkpoints.c.data)
            .where(checkpoints.c.number > number)
            .order_by(checkpoints.c.number)
            .limit(limit)
        )
        return [(int(n), data.encode()) for n, data in rows.all()]


async def recompute_from(engine: AsyncEngine, start: Last) -> Verifier:
    """The event store's chain from checkpoint `start` to the head, recomputed: its
    `first_break` says where the store stops continuing the history `start` vouched for
    (an event altered, or the history before it rewritten)."""
    verifier = Verifier(head=start.chain_hash, position=start.position)
    position = start.position
    while verifier.first_break is None:
        batch = await store.records_after(engine, position, BATCH)
        if not batch:
            break
        for record in batch:
            verifier.add(Entry(record.position, record.data, record.chain_hash))
        position = batch[-1].position
    return verifier
