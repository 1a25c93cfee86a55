"""Foreign messages on the key event stream, against a real nats-server with the real
permissions, the keys service in-process, and readers with the real views of the edge (auth
cache) and of the usage service (plan book), each connected as its role. A `{}`, an event with a
wrong hash, a forged event that continues the chain, and a copy under a wrong position: none
is applied for good, the relay goes on publishing past them, and the changes made after them
reach every view. The foreign messages are put in the key log itself, as its own admin
(tests/integration/keys/foreign.py says why): the readers get them through their mirror."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.events import AnyEvent, PlanChanged
from aitbc_contracts.subjects import (
    HASH_HEADER,
    KEYS_OPERATOR_COMMANDS,
    KEYS_READ_COMMANDS,
    POSITION_HEADER,
    key_event_subject,
)
from aitbc_gate.auth_cache import AuthCache
from aitbc_gate.cache_invalidation import CacheInvalidation
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import store
from aitbc_keys.main import Service, running_service
from aitbc_keys.outbox import OutboxRelay
from aitbc_keys.settings import Settings
from aitbc_runtime.commands import KeysCommands
from aitbc_runtime.key_events import KeyEventReader
from aitbc_usage.plans import PlanBook, keys_lookup
from tests.integration.keys.foreign import copied, every_message, last_message, publish
from tests.integration.keys.helpers import append_keys
from tests.key_messages import Chained, with_headers
from tests.key_stream import Stored
from tests.unit import waiting

WITHIN = 10.0  # seconds: far more than an event takes to reach a reader


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        await waiting.until(condition, WITHIN, every=0.02)
    except TimeoutError:
        raise AssertionError(what) from None


@pytest.fixture
async def service(database_url: str, own_nats: NatsServer) -> AsyncIterator[Service]:
    settings = Settings(
        nats=own_nats.access("keys"),
        nats_writer=own_nats.access("keys-writer"),
        database_url=database_url,
    )
    async with running_service(settings, relay_poll_interval=30) as svc:
        yield svc


async def ask(nc: Client, command: m.AnyCommand) -> m.Reply:
    reply = await nc.request(KEYS_OPERATOR_COMMANDS, m.encoder.encode(command), timeout=10)
    return m.reply_decoder.decode(reply.data)


async def relayed(service: Service) -> None:
    want = await store.last_position(service.engine)
    await until(lambda: service.relay.position == want, f"the relay never published {want}")


class Edge:
    """What an edge keeps of the key events: its auth cache, following as role `edge`."""

    def __init__(self, nc: Client) -> None:
        self.cache = AuthCache(size=100, ttl=3600, negative_size=10, negative_ttl=60)
        self.reader = KeyEventReader(nc, [CacheInvalidation(self.cache)], "edge")


class Usage:
    """What the usage service keeps: its plan book, following and asking as role `usage`."""

    def __init__(self, nc: Client) -> None:
        self.book = PlanBook(keys_lookup(KeysCommands(nc, 5.0, KEYS_READ_COMMANDS)))
        self.reader = KeyEventReader(nc, [self.book], "usage")


async def a_key(admin: Client) -> tuple[m.AccountView, m.KeyView, str]:
    """An account with a standard key: their views, and the key's hash."""
    master, key = keyformat.generate_key(), keyformat.generate_key()
    account = await ask(
        admin,
        m.CreateAccount(master_key_hash=keyformat.hash_key(master), master_key_hint="aitbc_m"),
    )
    assert isinstance(account, m.AccountView)
    created = await ask(
        admin,
        m.CreateKey(
            account_id=account.account_id,
            name="ci",
            secret_hash=keyformat.hash_key(key),
            hint=keyformat.hint(key),
        ),
    )
    assert isinstance(created, m.KeyView)
    return account, created, keyformat.hash_key(key)


async def checked(service: Service, secret_hash: str) -> m.KeyFacts | m.Rejected:
    """What the keys service answers a check of the hash with (what an edge caches)."""
    answer = await service.checks.check(m.encoder.encode(m.CheckKeys([secret_hash])))
    reply = m.check_reply_decoder.decode(answer)
    assert isinstance(reply, m.CheckedKeys)
    return reply.replies[0]


def forged_plan(account_id: str, event_id: str) -> PlanChanged:
    """What a forger would like: the account on enterprise (a version far ahead, so that a view
    that kept it would ignore the genuine changes after it)."""
    return PlanChanged(
        event_id=event_id,
        stream_id=account_id,
        version=99,
        account_id=account_id,
        occurred_at=datetime.now(UTC),
        plan="enterprise",
        previous_plan="free",
    )


@asynccontextmanager
async def views(server: NatsServer) -> AsyncIterator[tuple[Edge, Usage]]:
    """An edge's and the usage service's views, each following the stream as its role."""
    edge_nc = await nats.connect(**server.options("edge"))
    usage_nc = await nats.connect(**server.options("usage"))
    edge, usage = Edge(edge_nc), Usage(usage_nc)
    try:
        for reader in (edge.reader, usage.reader):
            reader.start()
        yield edge, usage
    finally:
        for reader in (edge.reader, usage.reader):
            await reader.stop()
        await edge_nc.close()
        await usage_nc.close()


async def all_at(readers: list[KeyEventReader], position: int, head: str = "") -> None:
    def there() -> bool:
        return all(
            r.chain.position == position and (not head or r.chain.head == head) for r in readers
        )

    await until(there, f"not every reader took position {position}")


async def forge_after(keylog: Client, account_id: str, last: Stored) -> None:
    """Garbage, an event with a wrong hash, and a forged plan change that continues the chain
    after `last`, made from what anyone who reads the stream sees."""
    forger = Chained(int(last.headers[POSITION_HEADER]), last.headers[HASH_HEADER])
    subject = key_event_subject(account_id, account_id)
    await publish(keylog, "aitbc.keys.events.x", (b"{}", {}))
    wrong_hash = with_headers(forger.forged_next(forged_plan("acc_x", "f1")), Aitbc_Hash="0" * 64)
    await publish(keylog, subject, wrong_hash)
    await publish(keylog, subject, forger.forged_next(forged_plan(account_id, "f2")))


async def test_forged_and_garbled_events_change_nothing_for_good_and_later_changes_reach_every_view(
    service: Service, admin: Client, keylog: Client, own_nats: NatsServer
) -> None:
    account, created, secret_hash = await a_key(admin)
    await relayed(service)
    async with views(own_nats) as (edge, usage):
        readers = [edge.reader, usage.reader, service.reader]
        last = await last_message(keylog)
        position = int(last.headers[POSITION_HEADER])
        await all_at(readers, position)  # each anchored at the stream's last message
        digest = bytes.fromhex(secret_hash)
        facts = await checked(service, secret_hash)
        assert isinstance(facts, m.KeyFacts) and not facts.revoked
        edge.cache.put(digest, facts, edge.cache.generation)  # the edge admitted the key
        assert await usage.book.resolve(account.account_id) == "free"

        # Garbage and a wrong hash are refused; the forged event that continues the chain is
        # taken (the readers follow the mirror: it got there), nobody can tell...
        await forge_after(keylog, account.account_id, last)
        await all_at(readers, position + 1)
        assert usage.book.known(account.account_id) == "enterprise"

        # ...until the genuine event of that position comes: a fork. Every view asks again.
        revoked = await ask(admin, m.RevokeKey(account_id=None, key_id=created.key_id))
        assert isinstance(revoked, m.KeyView) and revoked.status == "revoked"
        await relayed(service)
        [revocation] = await store.records_after(service.engine, position, 1)
        await all_at(readers, position + 1, revocation.chain_hash)
        assert edge.cache.get(digest) is None  # not trusted until asked again
        assert await usage.book.resolve(account.account_id) == "free"
        now_revoked = msgspec.structs.replace(facts, revoked=True)
        await until(
            lambda: service.index.facts(secret_hash, datetime.now(UTC)) == now_revoked,
            "the keys service's index did not reload",
        )
        assert await checked(service, secret_hash) == now_revoked

        # A copy of a genuine event under a wrong position: it resyncs, and the next change
        # still reaches every view.
        subject = key_event_subject(account.account_id, account.account_id)
        await publish(keylog, subject, copied(await last_message(keylog), position + 9))
        pro = await ask(admin, m.SetPlan(account_id=account.account_id, plan="pro"))
        assert isinstance(pro, m.AccountView)
        await relayed(service)
        [plan_change] = await store.records_after(service.engine, position + 1, 1)
        await all_at(readers, position + 2, plan_change.chain_hash)
        assert await usage.book.resolve(account.account_id) == "pro"

    # The relay published each genuine event after the foreign messages, as stored.
    assert (await last_message(keylog)).sequence == last.sequence + 6
    assert (await last_message(keylog)).data == plan_change.data
    for reader in readers:
        assert reader.refused == {"inserted": 1, "altered": 1}, reader.name
        assert reader.resyncs == {"reordered": 2, "removed": 1}, reader.name


async def test_a_relay_starting_after_foreign_messages_resumes_after_its_last_event(
    engine: AsyncEngine, own_nats: NatsServer, keylog: Client, history_of: Any
) -> None:
    writer = await nats.connect(**own_nats.options("keys-writer"))
    try:
        first = await append_keys(engine, history_of, keys=1, events=3)
        relay = OutboxRelay(engine, writer, poll_interval=30)
        relay.start()
        await until(lambda: relay.position == 3, "the relay never published 3 events")
        await relay.stop()
        last = await last_message(keylog)
        # What the stream's last messages may be when a relay starts: garbage, a copy of an
        # event under the next position, and a forged event continuing the chain there.
        await publish(keylog, "aitbc.keys.events.x", (b"{}", {}))
        await publish(keylog, last_subject(first), copied(last, 4))
        forger = Chained(3, last.headers[HASH_HEADER])
        forged = msgspec.structs.replace(first[-1], event_id="forged", version=3)
        await publish(keylog, last_subject(first), forger.forged_next(forged))
        later = await append_keys(engine, history_of, keys=1, events=2)

        relay = OutboxRelay(engine, writer, poll_interval=30)
        relay.start()
        await until(lambda: relay.position == 5, "the relay never published past them")
        await relay.stop()
    finally:
        await writer.close()
    stored = await store.records_after(engine, 0)
    stream = await every_message(keylog)
    assert len(stream) == 8  # 3 events, 3 foreign messages, 2 events
    assert [(m.data, m.headers.get(HASH_HEADER)) for m in stream[:3]] == [
        (r.data, r.chain_hash) for r in stored[:3]
    ]
    assert stream[3].data == b"{}"  # the foreign messages stay: only its admin deletes them
    assert [(m.data, m.headers[HASH_HEADER]) for m in stream[6:]] == [
        (r.data, r.chain_hash) for r in stored[3:]
    ]
    assert [e.event_id for e in later] == [r.event_id for r in stored[3:]]


def last_subject(events: list[AnyEvent]) -> str:
    return key_event_subject(events[-1].account_id, events[-1].stream_id)
