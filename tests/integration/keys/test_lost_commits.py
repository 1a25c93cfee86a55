"""The keys database loses its last commits (restored from a backup older than the stream, or
failed over to a replica that had not received them), on SQLite and PostgreSQL: the keys
service takes them back from the key event stream, so a key revoked before the loss stays
revoked, and the log goes on without a fork."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import messages as m
from aitbc_contracts.chain import link
from aitbc_contracts.subjects import HASH_HEADER, POSITION_HEADER
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import projections, store
from aitbc_keys.db import write_transaction
from aitbc_keys.main import running_service
from aitbc_keys.outbox import OutboxRelay
from aitbc_keys.schema import events
from tests.bus import keys_settings
from tests.integration.keys.caller import Caller, new_account, new_key
from tests.integration.keys.helpers import Connect, append_keys
from tests.key_stream import key_stream


@asynccontextmanager
async def keys_running(database_url: str, own_nats: NatsServer) -> AsyncIterator[Caller]:
    settings = keys_settings(own_nats, database_url=database_url)
    async with running_service(settings, relay_poll_interval=0.2):
        nc = await nats.connect(**own_nats.options())  # an operator
        try:
            yield Caller(nc)
        finally:
            await nc.close()


async def relayed(
    own_nats: NatsServer, engine: AsyncEngine, at_least: int = 1
) -> list[tuple[int, bytes, str]]:
    """(position, bytes, hash) of every message in the stream, once it holds the store's last
    (and `at_least` messages)."""
    for _ in range(200):
        held = [
            (int(msg.headers[POSITION_HEADER]), msg.data, msg.headers[HASH_HEADER])
            for msg in await key_stream(own_nats.access("keylog-admin"))
        ]
        if len(held) >= at_least and held[-1][0] == await store.last_position(engine):
            return held
        await asyncio.sleep(0.05)
    raise AssertionError("the relay did not publish the store's events")


async def restore_to(engine: AsyncEngine, position: int) -> None:
    """The database as a backup taken at `position` would restore it: the later events gone,
    and the read models as they were then."""
    async with write_transaction(engine) as conn:
        await conn.execute(events.delete().where(events.c.position > position))
    await projections.rebuild(engine)


async def test_a_database_restored_from_an_older_backup_takes_back_what_the_stream_holds(
    database_url: str, engine: AsyncEngine, own_nats: NatsServer
) -> None:
    async with keys_running(database_url, own_nats) as caller:
        account, _ = await new_account(caller)
        view, key = await new_key(caller, account)
        backed_up = await store.last_position(engine)  # the backup is taken here
        revoked = await caller.do(m.RevokeKey(account_id=None, key_id=view.key_id, reason="leak"))
        assert isinstance(revoked, m.KeyView) and revoked.status == "revoked"
        before = await relayed(own_nats, engine)

    await restore_to(engine, backed_up)  # the revocation is lost from the database
    async with keys_running(database_url, own_nats) as caller:
        facts = await caller.check(key)
        assert isinstance(facts, m.KeyFacts) and facts.revoked  # not active again
        async with engine.connect() as conn:
            status = await conn.execute(sa.text("SELECT status FROM api_keys WHERE key_id = :k"),
                                        {"k": view.key_id})  # fmt: skip
            assert status.scalar_one() == "revoked"
        await new_key(caller, account, name="after")  # the log goes on from there
        after = await relayed(own_nats, engine)

    assert after[: len(before)] == before  # nothing republished, nothing foreign
    positions = [position for position, _, _ in after]
    assert positions == list(range(1, len(after) + 1))
    head = ""
    for _, data, chain_hash in after:  # one chain, the new event continuing the old ones
        head = link(head, data)
        assert chain_hash == head
    stored = await store.records_after(engine, 0)
    assert [(r.position, r.data, r.chain_hash) for r in stored] == after


async def test_the_relay_takes_them_back_before_it_relays_more(
    engine: AsyncEngine, own_nats: NatsServer, connect: Connect, history_of: Any
) -> None:
    """A database that fails over while the keys service runs: its relay reads the stream
    again (a publish refused, a reconnect) and finds the stream ahead of the store."""
    await append_keys(engine, history_of, keys=3)  # three key streams of two events
    relay = OutboxRelay(engine, await connect(), poll_interval=0.05)
    relay.start()
    try:
        before = await relayed(own_nats, engine)
        await restore_to(engine, 4)  # the last key's two events lost
        relay.position = None  # what a failed publish does: read the stream again
        relay.wake()
        for _ in range(200):
            if await store.last_position(engine) == 6:
                break
            await asyncio.sleep(0.05)
        await append_keys(engine, history_of, keys=1)
        after = await relayed(own_nats, engine, at_least=8)
    finally:
        await relay.stop()
    assert after[:6] == before
    assert [position for position, _, _ in after] == list(range(1, 9))
    stored = await store.records_after(engine, 0)
    assert [(r.position, r.data, r.chain_hash) for r in stored] == after
