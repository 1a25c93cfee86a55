"""Events the key event stream holds past the store's last one, put back into the store.

The relay publishes only what the store has committed, so the stream can be ahead of the store
only when the database lost commits it had made: restored from a backup older than the
stream, or failed over to a replica that had not received its last transactions. Those events
were decided, answered and published (revocations among them, which every edge applied). Left
out of the store, a revoked key would be active again at the keys service, which every edge
asks on a cache miss; and the relay would publish the store's next events after them, at
positions the stream already holds: a fork that every reader refuses.

So the keys service takes them back, before it answers anything and whenever its relay reads
the stream again: each message after the store's last position that is the next position and
continues the store's hash chain (its hash header is `link(the store's head, its bytes)`, as the
relay published it) is appended with its bytes, position and hash, and applied to the read
models, in one write transaction that first checks the store's head is still the one the
messages continue. The first message that does not continue the chain ends the recovery; a
store that has moved on past the fork point (events appended since, other than the stream's)
is not touched, and the relay says so (aitbc_keys.outbox). Only `keys-writer` may publish to
the stream, the role the store's own events come from; every reader of the stream trusts the
same chain check.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aitbc_contracts.chain import GENESIS, link
from aitbc_contracts.events import decode_event
from aitbc_contracts.subjects import HASH_HEADER, KEY_EVENTS_STREAM, POSITION_HEADER
from aitbc_keys import store
from aitbc_keys.db import write_transaction
from aitbc_keys.projections import SqlReadModel
from aitbc_keys.schema import events

log = logging.getLogger(__name__)


async def take_back(engine: AsyncEngine, js: JetStreamContext) -> list[store.Record]:
    """Put back into the store the events the stream holds past its head; returns them."""
    try:
        info = await js.stream_info(KEY_EVENTS_STREAM)
    except NotFoundError:
        return []
    if not info.state.messages:
        return []
    async with engine.connect() as conn:
        position, head = await _head(conn)
    first, last = info.state.first_seq, info.state.last_seq
    found = await _following(js, range(first, last + 1), position, head)
    if not found:
        return []
    async with write_transaction(engine) as conn:
        if await _head(conn) != (position, head):
            return []  # another keys process took them back, or the store moved on meanwhile
        await _append(conn, found)
    log.warning(
        "the store lacked %d event(s) the key event stream holds after position %d (a database "
        "restored from an older backup, or failed over with loss): taken back from the stream, "
        "positions %d-%d",
        len(found),
        position,
        found[0].position,
        found[-1].position,
    )
    return found


async def _head(conn: AsyncConnection) -> tuple[int, str]:
    """The store's last position and chain hash (0 and GENESIS when it is empty)."""
    query = sa.select(events.c.position, events.c.chain_hash).order_by(events.c.position.desc())
    last = (await conn.execute(query.limit(1))).first()
    return (int(last.position), str(last.chain_hash)) if last else (0, GENESIS)


async def _following(
    js: JetStreamContext, sequences: range, position: int, head: str
) -> list[store.Record]:
    """The messages after `position` that continue the chain from `head`, in order. The
    stream's sequences are not positions (foreign messages take sequences too), so the one
    holding the next position is found by walking back from the end."""
    start = None
    for sequence in reversed(sequences):
        held = _position_of(await _message(js, sequence))
        if held is not None and held <= position:
            break
        if held == position + 1:
            start = sequence
    if start is None:
        return []
    found: list[store.Record] = []
    for sequence in range(start, sequences.stop):
        message = await _message(js, sequence)
        record = _continuing(message, position, head)
        if record is None:
            if _position_of(message) is None:
                continue  # not an event at all: every reader skips it too
            break
        found.append(record)
        position, head = record.position, record.chain_hash
    return found


async def _message(js: JetStreamContext, sequence: int) -> RawStreamMsg | None:
    try:
        return await js.get_msg(KEY_EVENTS_STREAM, seq=sequence)
    except NotFoundError:
        return None  # removed by an admin


def _position_of(message: RawStreamMsg | None) -> int | None:
    value = ((message.headers or {}) if message else {}).get(POSITION_HEADER, "")
    return int(value) if value.isdecimal() else None


def _continuing(message: RawStreamMsg | None, position: int, head: str) -> store.Record | None:
    """The message as a stored record, if it is the event at `position + 1` continuing the
    chain from `head`; else None."""
    if message is None or _position_of(message) != position + 1:
        return None
    data = message.data or b""
    chain_hash = (message.headers or {}).get(HASH_HEADER)
    if chain_hash != link(head, data):
        return None
    try:
        event = decode_event(data)
    except Exception:  # garbled, or not an event this version knows
        return None
    return store.Record(
        position + 1, event.event_id, event.stream_id, event.version, event.account_id,
        data, chain_hash,
    )  # fmt: skip


async def _append(conn: AsyncConnection, records: list[store.Record]) -> None:
    """The records into the log as they were, and into the read models as any append is."""
    model = SqlReadModel(conn)
    for record in records:
        event = decode_event(record.data)
        row = {
            "position": record.position,
            "event_id": record.event_id,
            "stream_id": record.stream_id,
            "version": record.version,
            "account_id": record.account_id,
            "type": str(event.__struct_config__.tag),
            "occurred_at": event.occurred_at,
            "data": record.data.decode(),
            "chain_hash": record.chain_hash,
        }
        await conn.execute(events.insert().values(row))
        await model.process(event, record.position)
