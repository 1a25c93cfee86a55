"""A change the keys service cannot commit within its sender's wait is not applied: by then
the edge has answered its client 503, so the change must not happen after all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_api.errors import ApiError
from aitbc_api.owners.key_manager import send
from aitbc_api.pipeline.key_checks import KeyChecks
from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import store
from aitbc_keys.db import create_engine, write_transaction
from aitbc_keys.handlers import Handlers
from aitbc_keys.main import running_service
from aitbc_keys.settings import Settings
from aitbc_runtime.commands import KeysCommands

WAIT_MS = 400  # the sender's wait: the change must be ready to commit within 0.3 s


@asynccontextmanager
async def write_lock_held(database_url: str) -> AsyncIterator[None]:
    """Another writer holds the database's write lock until the block ends."""
    other = create_engine(database_url)
    held, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with write_transaction(other):
            held.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    try:
        await held.wait()
        yield
    finally:
        release.set()
        await holder
        await other.dispose()


def sign_up(answer_within_ms: int | None = WAIT_MS) -> bytes:
    key = generate_key()
    command = m.CreateAccount(
        master_key_hash=hash_key(key), master_key_hint=hint(key), answer_within_ms=answer_within_ms
    )
    return m.encoder.encode(command)


async def answer(handlers: Handlers, data: bytes) -> m.Reply:
    return m.reply_decoder.decode(await handlers.command(data))  # type: ignore[no-any-return]


async def test_a_change_that_waited_past_its_senders_wait_is_not_applied(
    engine: AsyncEngine, database_url: str
) -> None:
    handlers = Handlers(engine)
    async with write_lock_held(database_url):
        answering = asyncio.create_task(handlers.command(sign_up()))
        await asyncio.sleep(WAIT_MS / 1000 + 0.2)  # the edge has answered 503 by now
        assert not answering.done()  # still waiting for the lock
    reply = m.reply_decoder.decode(await answering)
    assert isinstance(reply, m.Rejected) and reply.code == m.Code.SERVICE_UNAVAILABLE
    assert "not applied" in reply.message
    assert await store.all_events(engine) == []


async def test_a_key_change_that_waited_past_its_senders_wait_is_not_applied(
    engine: AsyncEngine, database_url: str
) -> None:
    """The load-decide-append path (revoke, regenerate, plan changes) checks it too."""
    handlers = Handlers(engine)
    account = await answer(handlers, sign_up())
    assert isinstance(account, m.AccountView)
    before = await store.all_events(engine)
    key_id = account.master_key_id
    revoke = m.RevokeKey(account_id=account.account_id, key_id=key_id, answer_within_ms=WAIT_MS)
    async with write_lock_held(database_url):
        answering = asyncio.create_task(handlers.command(m.encoder.encode(revoke)))
        await asyncio.sleep(WAIT_MS / 1000 + 0.2)
    reply = m.reply_decoder.decode(await answering)
    assert isinstance(reply, m.Rejected) and reply.code == m.Code.SERVICE_UNAVAILABLE
    assert await store.all_events(engine) == before


async def test_a_change_within_its_senders_wait_is_applied(
    engine: AsyncEngine, database_url: str
) -> None:
    handlers = Handlers(engine)
    async with write_lock_held(database_url):  # released well within the wait
        answering = asyncio.create_task(handlers.command(sign_up(answer_within_ms=10_000)))
        await asyncio.sleep(0.05)
    assert isinstance(m.reply_decoder.decode(await answering), m.AccountView)


async def test_a_command_without_a_wait_is_applied_however_late(
    engine: AsyncEngine, database_url: str
) -> None:
    """The CLI's and operators' commands: applied whenever the lock comes free."""
    handlers = Handlers(engine)
    async with write_lock_held(database_url):
        answering = asyncio.create_task(handlers.command(sign_up(answer_within_ms=None)))
        await asyncio.sleep(WAIT_MS / 1000 + 0.2)
    assert isinstance(m.reply_decoder.decode(await answering), m.AccountView)
    assert len(await store.all_events(engine)) == 2


async def test_the_edge_answers_503_and_the_change_does_not_happen_later(
    database_url: str, own_nats: NatsServer
) -> None:
    """The edge's own client, over NATS, against the running service: the sign-up it answered
    503 does not make an account once the database is free again."""
    key = generate_key()
    command = m.CreateAccount(master_key_hash=hash_key(key), master_key_hint=hint(key))
    settings = Settings(nats_url=own_nats.url, database_url=database_url)
    async with running_service(settings):
        nc = await nats.connect(own_nats.url)
        try:
            commands = KeysCommands(nc, timeout=WAIT_MS / 1000)
            async with write_lock_held(database_url):
                with pytest.raises(ApiError) as refused:
                    await send(commands, command)
                assert refused.value.status == 503
            await asyncio.sleep(0.3)  # the waiting change has met the free database by now
            (reply,) = await KeyChecks(nc, timeout=WAIT_MS / 1000).check_many([hash_key(key)])
            assert isinstance(reply, m.Rejected) and reply.code == m.Code.INVALID_API_KEY
        finally:
            await nc.close()
