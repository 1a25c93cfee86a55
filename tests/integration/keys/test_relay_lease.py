"""Two keys services on one database (SQLite, then PostgreSQL) and one real nats-server: exactly
one runs the outbox relay, held by the lease `relay`; events committed through either reach the
stream once each, in order, promptly (the relays poll every 30 s: only the news of a commit
brings them at once); when the holder stops, the other takes the relay over and events keep
flowing; and a key revoked through one is refused by the other's checks before the stream has
brought the revocation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.events import AnyEvent
from aitbc_contracts.powers import Power
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import store
from aitbc_keys.main import Service, running_service
from aitbc_keys.writing import RELAY_SHARE
from aitbc_runtime.bus_access import BusAccess
from aitbc_runtime.lease_view import rendezvous
from tests.bus import keys_settings
from tests.key_stream import key_stream

# Seconds: a holder that stops hands the relay over at once, whatever its lease; a long one
# keeps a loaded machine's pauses from moving the relay mid-test (test_keys_twice kills one).
LEASE = 2.0


class Pair:
    """Two keys services, as `services[0]` and `services[1]`, stopped one by one; `flowing`
    cleared, the relay stops after its next publish until it is set again."""

    def __init__(
        self, services: list[Service], stacks: list[AsyncExitStack], flowing: asyncio.Event
    ) -> None:
        self.services = services
        self.stacks = stacks
        self.flowing = flowing

    def holders(self) -> list[Service]:
        return [svc for svc in self.services if svc.writing.running]

    async def one_holder(self) -> Service:
        """The holder, once the relay is where it stays while both run: with the member that
        rendezvous hashing gives it (the first to start takes it, and hands it over if the
        second is its place)."""
        home = rendezvous(RELAY_SHARE, [svc.ownership.member for svc in self.services])
        await until(
            lambda: [svc.ownership.member for svc in self.holders()] == [home],
            "the relay is not where it belongs",
        )
        return self.holders()[0]

    def other(self, svc: Service) -> Service:
        return next(s for s in self.services if s is not svc)

    async def stop(self, svc: Service) -> None:
        await self.stacks[self.services.index(svc)].aclose()


@pytest.fixture
async def pair(database_url: str, own_nats: NatsServer) -> AsyncIterator[Pair]:
    settings = keys_settings(own_nats, database_url=database_url, lease_seconds=LEASE)
    stacks = [AsyncExitStack(), AsyncExitStack()]
    flowing = asyncio.Event()
    flowing.set()

    async def after_publish(position: int, event: AnyEvent) -> None:
        await flowing.wait()

    try:
        services = [
            await stack.enter_async_context(
                running_service(settings, relay_poll_interval=30, after_publish=after_publish)
            )
            for stack in stacks
        ]
        yield Pair(services, stacks, flowing)
    finally:
        flowing.set()
        for stack in reversed(stacks):
            await stack.aclose()


async def until(condition: Callable[[], bool], what: str, within: float = 15) -> None:
    try:
        async with asyncio.timeout(within):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None


async def account_through(svc: Service) -> m.AccountView:
    """An account made by `svc`'s own command endpoint: committed in that process."""
    master = keyformat.generate_key()
    command = m.CreateAccount(
        master_key_hash=keyformat.hash_key(master), master_key_hint=keyformat.hint(master)
    )
    account = await svc.commands.execute(command, Power.OPERATOR)
    assert isinstance(account, m.AccountView), account
    return account


async def key_through(svc: Service, account: m.AccountView) -> tuple[m.KeyView, str]:
    key = keyformat.generate_key()
    made = await svc.commands.execute(
        m.CreateKey(
            account_id=account.account_id,
            name="k",
            secret_hash=keyformat.hash_key(key),
            hint=keyformat.hint(key),
        ),
        Power.OPERATOR,
    )
    assert isinstance(made, m.KeyView), made
    return made, key


async def revoke_through(svc: Service, made: m.KeyView) -> None:
    revoked = await svc.commands.execute(
        m.RevokeKey(account_id=made.account_id, key_id=made.key_id), Power.OPERATOR
    )
    assert isinstance(revoked, m.KeyView), revoked


async def key_made_and_revoked_through(svc: Service, account: m.AccountView) -> None:
    made, _ = await key_through(svc, account)
    await revoke_through(svc, made)


async def facts_of(svc: Service, key: str) -> m.KeyFacts | m.Rejected:
    """What `svc` answers a check of `key` with."""
    answer = await svc.checks.check(m.encoder.encode(m.CheckKeys([keyformat.hash_key(key)])))
    checked = m.check_reply_decoder.decode(answer)
    assert isinstance(checked, m.CheckedKeys), checked
    return checked.replies[0]


async def revoked_for(svc: Service, key: str) -> bool:
    facts = await facts_of(svc, key)
    assert isinstance(facts, m.KeyFacts), facts
    return facts.revoked


async def stream_is_store(engine: AsyncEngine, auditor: BusAccess) -> list[int]:
    """Until the stream holds every committed event: then it holds each exactly once, in
    position order, as stored (ids and bytes). Returns the positions."""
    want = await store.last_position(engine)
    stream = []

    async def caught_up() -> bool:
        nonlocal stream
        stream = await key_stream(auditor)
        return len(stream) >= want

    try:
        async with asyncio.timeout(15):
            while not await caught_up():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"the stream has {len(stream)} of {want} events after 15 s") from None
    records = await store.records_after(engine, 0, limit=100_000)
    assert [int(s.headers["Aitbc-Position"]) for s in stream] == [r.position for r in records]
    assert [s.headers["Nats-Msg-Id"] for s in stream] == [r.event_id for r in records]
    assert [s.data for s in stream] == [r.data for r in records]
    return [r.position for r in records]


async def test_one_relays_what_both_commit_and_the_other_takes_over_when_it_stops(
    pair: Pair, auditor: BusAccess
) -> None:
    holder = await pair.one_holder()
    other = pair.other(holder)
    assert holder.ownership.holds(RELAY_SHARE) and not other.ownership.holds(RELAY_SHARE)

    # Commits in both processes, interleaved and concurrent: the holder's relay sends them
    # all, the other's sends nothing. With 30 s polls, they arrive only if each commit in the
    # other process woke the holder's relay across the bus.
    accounts = await asyncio.gather(account_through(holder), account_through(other))
    for _ in range(3):
        await asyncio.gather(
            *(key_made_and_revoked_through(svc, a) for svc in pair.services for a in accounts)
        )
        await stream_is_store(holder.engine, auditor)
    await key_made_and_revoked_through(other, accounts[0])  # alone: only a wake brings it
    positions = await stream_is_store(holder.engine, auditor)
    assert len(positions) == 2 * 2 + 3 * 4 * 2 + 2  # accounts: 2 events; keys: 2 each
    assert other.relay.published == 0 and other.news.sent > 0
    assert holder.relay.published == len(positions) and holder.news.heard > 0
    assert pair.holders() == [holder]

    # The holder stops (it hands the relay over as it goes): the other relays from then on,
    # after the last event in the stream, sending nothing twice.
    await pair.stop(holder)
    await until(lambda: other.writing.running, "the relay was not taken over")
    await key_made_and_revoked_through(other, accounts[1])
    assert await stream_is_store(other.engine, auditor) == list(range(1, len(positions) + 3))
    assert other.relay.published == 2


async def test_a_key_revoked_in_one_is_refused_by_the_other_before_the_stream_has_it(
    pair: Pair, auditor: BusAccess
) -> None:
    holder = await pair.one_holder()
    other = pair.other(holder)
    account = await account_through(holder)
    keys = [await key_through(svc, account) for svc in (holder, other)]
    await stream_is_store(holder.engine, auditor)
    # Each knows both keys, from its commit or from the stream: its own account's mirror of
    # it, which may be a moment behind the auditor's.
    await until(
        lambda: all(
            svc.index.facts(keyformat.hash_key(key), holder.checks.clock()) is not None
            for svc in pair.services
            for _, key in keys
        ),
        "a keys process never knew a key the other made",
    )
    for svc in pair.services:
        for _, key in keys:
            assert not await revoked_for(svc, key)

    # The relay stops after one more event, so the stream brings neither process the next
    # ones: only the news of each commit tells the other process its facts are behind.
    pair.flowing.clear()
    upgraded = await holder.commands.execute(
        m.SetPlan(account_id=account.account_id, plan="pro"), Power.OPERATOR
    )  # one event
    assert isinstance(upgraded, m.AccountView), upgraded
    published = await stream_is_store(holder.engine, auditor)
    heard = [svc.news.heard for svc in pair.services]
    for (made, _), svc in zip(keys, (holder, other), strict=True):
        await revoke_through(svc, made)
    await until(
        lambda: all(svc.news.heard > n for svc, n in zip(pair.services, heard, strict=True)),
        "the news of the revocations",
    )
    assert len(await key_stream(auditor)) == len(published)  # not in the stream
    assert await revoked_for(other, keys[0][1]), "revoked by the holder, and the other vouched"
    assert await revoked_for(holder, keys[1][1]), "revoked by the other, and the holder vouched"

    pair.flowing.set()
    await stream_is_store(holder.engine, auditor)
    await until(lambda: not other.index._behind and not holder.index._behind, "caught up")
    for svc in pair.services:  # from the index again, which has the revocations now
        for _, key in keys:
            facts = svc.index.facts(keyformat.hash_key(key), holder.checks.clock())
            assert facts is not None and facts.revoked
