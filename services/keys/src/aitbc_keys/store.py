"""The append-only event store: optimistic concurrency per stream, one global position order,
one hash chain along it (aitbc_contracts.chain)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import NamedTuple

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aitbc_contracts.chain import GENESIS, link
from aitbc_contracts.events import AnyEvent, decode_event, encode_event
from aitbc_contracts.messages import Code
from aitbc_keys.db import write_transaction
from aitbc_keys.domain import KeysError
from aitbc_keys.schema import events

# (stream id, the version the caller last saw (0: a new stream), the events to add after it)
Batch = tuple[str, int, Sequence[AnyEvent]]


class ConcurrencyError(KeysError):
    """Someone else appended to the stream first: load again and decide again."""

    code = Code.CONFLICT


class TooLate(KeysError):
    """The change was ready only after its deadline (time.monotonic()): not applied."""

    code = Code.SERVICE_UNAVAILABLE


class Record(NamedTuple):
    """An event as stored: its canonical bytes, exactly as they are hashed and published."""

    position: int
    event_id: str
    stream_id: str
    version: int
    account_id: str
    data: bytes
    chain_hash: str


def _tag(event: AnyEvent) -> str:
    return str(event.__struct_config__.tag)


async def append_in(
    conn: AsyncConnection, batches: Sequence[Batch], read_here: bool = False
) -> list[Record]:
    """Append inside a write transaction (see db.write_transaction); returns the events as
    stored, in position order. `read_here`: the batches' streams were read in this same
    transaction, so their versions are the ones expected and are not read again."""
    batches = [b for b in batches if b[2]]
    if not batches:
        return []
    streams = [stream_id for stream_id, _, _ in batches]
    if len(set(streams)) != len(streams):
        raise ValueError("one batch per stream")
    current = (
        {stream_id: expected for stream_id, expected, _ in batches}
        if read_here
        else await _versions(conn, streams)
    )
    # The write lock makes the last event, and so the chain's head, ours until commit.
    last = (
        await conn.execute(
            sa.select(events.c.position, events.c.chain_hash)
            .order_by(events.c.position.desc())
            .limit(1)
        )
    ).first()
    position, head = (int(last.position), last.chain_hash) if last else (0, GENESIS)
    rows, records = [], []
    for stream_id, expected, new in batches:
        if current.get(stream_id, 0) != expected:
            raise ConcurrencyError(f"stream {stream_id} changed concurrently; try again")
        for offset, event in enumerate(new, start=1):
            if event.stream_id != stream_id or event.version != expected + offset:
                raise ValueError(f"event {event.event_id} does not follow {stream_id}@{expected}")
            position += 1
            data = encode_event(msgspec.structs.replace(event, prev_hash=head))
            head = link(head, data)
            records.append(
                Record(position, event.event_id, stream_id, event.version, event.account_id,
                       data, head)
            )  # fmt: skip
            rows.append(
                {
                    "position": position,
                    "event_id": event.event_id,
                    "stream_id": stream_id,
                    "version": event.version,
                    "account_id": event.account_id,
                    "type": _tag(event),
                    "occurred_at": event.occurred_at,
                    "data": data.decode(),
                    "chain_hash": head,
                }
            )
    await conn.execute(events.insert(), rows)
    return records


async def _versions(conn: AsyncConnection, streams: list[str]) -> dict[str, int]:
    query = (
        sa.select(events.c.stream_id, sa.func.max(events.c.version))
        .where(events.c.stream_id.in_(streams))
        .group_by(events.c.stream_id)
    )
    return {stream_id: int(version) for stream_id, version in (await conn.execute(query)).all()}


@asynccontextmanager
async def appending(
    engine: AsyncEngine, deadline: float | None = None
) -> AsyncIterator[AsyncConnection]:
    """The write transaction of an append (append_in), committed when the block ends. Past the
    `deadline` (time.monotonic()), checked last before the commit, nothing is committed."""
    try:
        async with write_transaction(engine) as conn:
            yield conn
            if deadline is not None and time.monotonic() > deadline:
                raise TooLate("the change was not applied in time; try again")  # rolls back
    except IntegrityError as exc:
        # The version check runs under the write lock, so this is a duplicate event id or a
        # reused secret hash: either way the command collided with existing state.
        raise ConcurrencyError("the change collides with an existing event or key") from exc


async def append(
    engine: AsyncEngine, batches: Sequence[Batch], deadline: float | None = None
) -> list[int]:
    """Append events to one or more streams atomically (the log alone: the views are the
    unit of work's, aitbc_keys.service_layer.unit_of_work)."""
    async with appending(engine, deadline) as conn:
        return [record.position for record in await append_in(conn, batches)]


async def load(engine: AsyncEngine, stream_id: str) -> list[AnyEvent]:
    async with engine.connect() as conn:
        return await load_in(conn, stream_id)


async def load_in(
    conn: AsyncConnection, stream_id: str, before_version: int | None = None
) -> list[AnyEvent]:
    """One stream's events, oldest first; with `before_version`, those before it only."""
    query = sa.select(events.c.data).where(events.c.stream_id == stream_id)
    if before_version is not None:
        query = query.where(events.c.version < before_version)
    rows = await conn.execute(query.order_by(events.c.version))
    return [decode_event(data) for data in rows.scalars()]


async def load_account(engine: AsyncEngine, account_id: str) -> list[AnyEvent]:
    """Every event of an account and of its keys, in log order."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(events.c.data)
            .where(events.c.account_id == account_id)
            .order_by(events.c.position)
        )
        return [decode_event(data) for data in rows.scalars()]


async def events_after(
    engine: AsyncEngine,
    position: int,
    limit: int = 500,
) -> list[tuple[int, AnyEvent]]:
    """The next committed events in global order, decoded (the relay reads records_after)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(events.c.position, events.c.data)
            .where(events.c.position > position)
            .order_by(events.c.position)
            .limit(limit)
        )
        return [(int(pos), decode_event(data)) for pos, data in rows.all()]


async def records_after(engine: AsyncEngine, position: int, limit: int = 500) -> list[Record]:
    """The next committed events in global order, as stored: what the relay publishes."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                events.c.position,
                events.c.event_id,
                events.c.stream_id,
                events.c.version,
                events.c.account_id,
                events.c.data,
                events.c.chain_hash,
            )
            .where(events.c.position > position)
            .order_by(events.c.position)
            .limit(limit)
        )
        return [
            Record(int(pos), eid, sid, int(version), aid, data.encode(), chain_hash)
            for pos, eid, sid, version, aid, data, chain_hash in rows.all()
        ]


async def all_events(engine: AsyncEngine) -> list[AnyEvent]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(events.c.data).order_by(events.c.position))
        return [decode_event(data) for data in rows.scalars()]


async def last_position(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        result = await conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.position), 0)))
        return int(result.scalar_one())
