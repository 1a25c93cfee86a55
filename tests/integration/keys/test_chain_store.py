"""The event store keeps the hash chain: at append time, under concurrency, across migration."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_cli.verify import check_store
from aitbc_contracts.chain import GENESIS, link
from aitbc_contracts.events import decode_event, encode_event
from aitbc_keys import store
from aitbc_keys.db import MIGRATIONS, migrate
from aitbc_runtime.sql import alembic_config, create_engine, write_transaction


async def test_concurrent_appends_make_one_unbroken_chain(
    engine: AsyncEngine, history_of: Any
) -> None:
    streams = [history_of(2) for _ in range(30)]
    await asyncio.gather(*(store.append(engine, [(h[0].stream_id, 0, h)]) for h in streams))
    records = await store.records_after(engine, 0, limit=100)
    assert [r.position for r in records] == list(range(1, 61))
    head = GENESIS
    for record in records:
        assert decode_event(record.data).prev_hash == head  # each event names the one before
        head = link(head, record.data)
        assert record.chain_hash == head
    assert (
        await check_store(str(engine.url.render_as_string(hide_password=False)))
    ).first_break is None


async def test_events_from_before_the_chain_are_chained_by_the_migration(
    database_url: str, history_of: Any
) -> None:
    engine = create_engine(database_url)
    try:
        async with write_transaction(engine) as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(MIGRATIONS, c), "0001"))
            old = history_of(3)
            await conn.execute(
                sa.text(
                    "INSERT INTO events (position, event_id, stream_id, version, account_id,"
                    " type, occurred_at, data) VALUES (:p, :e, :s, :v, :a, :t, :o, :d)"
                ),
                [
                    {
                        "p": n,
                        "e": ev.event_id,
                        "s": ev.stream_id,
                        "v": ev.version,
                        "a": ev.account_id,
                        "t": ev.__struct_config__.tag,
                        "o": ev.occurred_at,
                        "d": encode_event(ev).decode(),  # as 0001 wrote them: no prev_hash
                    }
                    for n, ev in enumerate(old, start=1)
                ],
            )
        await migrate(engine)
        new = history_of(2)
        await store.append(engine, [(new[0].stream_id, 0, new)])
        records = await store.records_after(engine, 0)
        assert [r.data for r in records[:3]] == [encode_event(ev) for ev in old]  # untouched
        head = GENESIS
        for record in records:
            head = link(head, record.data)
            assert record.chain_hash == head
        assert decode_event(records[3].data).prev_hash == records[2].chain_hash
        url = engine.url.render_as_string(hide_password=False)
        assert (await check_store(url)).first_break is None
    finally:
        await engine.dispose()
