"""A change the keys service cannot commit within its sender's wait is not applied: by then
the edge has answered its client 503, so the change must not happen after all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import pytest
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_api.owners.key_manager import send
from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint
from aitbc_contracts.powers import Power
from aitbc_contracts.subjects import KEYS_OWNER_COMMANDS
from aitbc_gate.errors import ApiError
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import store
from aitbc_keys.db import create_engine, write_transaction
from aitbc_keys.entrypoint import CommandEndpoint
from aitbc_keys.main import running_service
from aitbc_runtime.commands import KeysCommands
from tests.bus import keys_settings

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


async def answer(endpoint: CommandEndpoint, data: bytes) -> m.Reply:
    return m.reply_decoder.decode(await endpoint.answer(data, Power.OPERATOR))  # type: ignore[no-any-return]


async def test_a_change_that_waited_past_its_senders_wait_is_not_applied(
    engine: AsyncEngine, database_url: str
) -> None:
    endpoint = CommandEndpoint(engine)
    async with write_lock_held(database_url):
        answering = asyncio.create_task(endpoint.answer(sign_up(), Power.OPERATOR))
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
    endpoint = CommandEndpoint(engine)
    account = await answer(endpoint, sign_up(answer_within_ms=None))  # setup: no deadline
    assert isinstance(account, m.AccountView)
    before = await store.all_events(engine)
    key_id = account.master_key_id
    revoke = m.RevokeKey(account_id=account.account_id, key_id=key_id, answer_within_ms=WAIT_MS)
    async with write_lock_held(database_url):
        answering = asyncio.create_task(endpoint.answer(m.encoder.encode(revoke), Power.OPERATOR))
        await asyncio.sleep(WAIT_MS / 1000 + 0.2)
    reply = m.reply_decoder.decode(await answering)
    assert isinstance(reply, m.Rejected) and reply.code == m.Code.SERVICE_UNAVAILABLE
    assert await store.all_events(engine) == before


async def test_a_change_within_its_senders_wait_is_applied(
    engine: AsyncEngine, database_url: str
) -> None:
    endpoint = CommandEndpoint(engine)
    async with write_lock_held(database_url):  # released well within the wait
        answering = asyncio.create_task(
            endpoint.answer(sign_up(answer_within_ms=10_000), Power.OPERATOR)
        )
        await asyncio.sleep(0.05)
    assert isinstance(m.reply_decoder.decode(await answering), m.AccountView)


async def test_a_command_without_a_wait_is_applied_however_late(
    engine: AsyncEngine, database_url: str
) -> None:
    """The CLI's and operators' commands: applied whenever the lock comes free."""
    endpoint = CommandEndpoint(engine)
    async with write_lock_held(database_url):
        answering = asyncio.create_task(
            endpoint.answer(sign_up(answer_within_ms=None), Power.OPERATOR)
        )
        await asyncio.sleep(WAIT_MS / 1000 + 0.2)
    assert isinstance(m.reply_decoder.decode(await answering), m.AccountView)
    assert len(await store.all_events(engine)) == 2


async def test_the_edge_answers_503_and_the_change_does_not_happen_later(
    database_url: str, own_nats: NatsServer
) -> None:
    """The one command client, over NATS, against the running service: the sign-up its sender
    gave up on (the edge answered 503) does not make an account once the database is free."""
    key = generate_key()
    command = m.CreateAccount(
        master_key_hash=hash_key(key), master_key_hint=hint(key), actor="signup"
    )
    settings = keys_settings(own_nats, database_url=database_url)
    edge = own_nats.access("edge")
    inbox = edge.inbox_prefix  # the only inboxes the edge's user may subscribe to
    async with running_service(settings) as service:
        nc = await nats.connect(**edge.options())
        late_replies: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_reply(msg: Msg) -> None:
            await late_replies.put(msg.data)

        # Every reply on this connection's inboxes, the one its sender stopped waiting for too.
        await nc.subscribe(f"{inbox}.>", cb=on_reply)
        try:
            client = KeysCommands(nc, WAIT_MS / 1000, KEYS_OWNER_COMMANDS)
            async with write_lock_held(database_url):
                with pytest.raises(ApiError) as refused:
                    await send(client, command)  # as the edge sends it
                assert refused.value.status == 503
            # The marker: the service's own answer to the abandoned command, once it is done.
            late = m.reply_decoder.decode(await asyncio.wait_for(late_replies.get(), 30))
            assert isinstance(late, m.Rejected) and late.code == m.Code.SERVICE_UNAVAILABLE
            check = m.encoder.encode(m.CheckKeys([hash_key(key)]))
            checked = m.check_reply_decoder.decode(await service.checks.check(check))
            assert isinstance(checked, m.CheckedKeys)
            [facts] = checked.replies
            assert isinstance(facts, m.Rejected) and facts.code == m.Code.INVALID_API_KEY
            assert await store.all_events(service.engine) == []
        finally:
            await nc.close()
