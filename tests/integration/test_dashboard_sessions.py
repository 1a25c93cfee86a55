"""Dashboard sessions in the shared NATS KV bucket, on a real nats-server: what one edge
starts, another serves; sign-out and expiry hold on every edge; an account has at most its cap
of sessions, whichever edges sign it in; a NATS outage is a 503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS

from aitbc_api.dashboard.sessions import TOUCH_EVERY, SessionStore, session_bucket
from aitbc_gate.errors import ApiError
from aitbc_infra.nats_server import NatsServer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def nc(own_nats: NatsServer) -> AsyncIterator[NATS]:
    client = await nats.connect(**own_nats.options("edge"))
    yield client
    await client.close()


async def edges(nc: NATS, clock: Clock, n: int = 2, per_account: int = 10) -> list[SessionStore]:
    """Stores as n edges would have them: each makes sure of the bucket, all share it."""
    return [
        SessionStore(
            await session_bucket(nc, 600, 1000),
            idle=60,
            lifetime=600,
            per_account=per_account,
            clock=clock,
        )
        for _ in range(n)
    ]


async def test_a_session_started_on_one_edge_is_served_by_another(nc: NATS) -> None:
    one, two = await edges(nc, Clock())
    token, session = await one.start("acc_1", "key_1", "ab" * 32)
    found = await two.get(token)
    assert found is not None
    assert (found.account_id, found.key_id, found.key_hash) == ("acc_1", "key_1", "ab" * 32)
    assert found.csrf_token == session.csrf_token and len(found.csrf_token) >= 32
    assert await two.get(token + "x") is None and await two.get("") is None
    assert await two.get(None) is None and await two.get("x" * 1000) is None


async def test_the_bucket_holds_digests_of_tokens_never_tokens(nc: NATS) -> None:
    (store,) = await edges(nc, Clock(), 1)
    token, session = await store.start("acc_1", "key_1", "h")
    assert session.digest != token
    keys = await store.bucket.keys()
    assert sorted(keys) == sorted([session.digest, "account.acc_1"])  # the account's list
    for key in keys:
        entry = await store.bucket.get(key)
        assert token.encode() not in (entry.value or b"")


async def test_sign_out_on_one_edge_ends_the_session_on_every_edge(nc: NATS) -> None:
    one, two = await edges(nc, Clock())
    token, session = await one.start("acc_1", "key_1", "h")
    await two.end(session)
    assert await one.get(token) is None and await two.get(token) is None


async def test_a_session_ends_when_idle_or_at_its_lifetime_whichever_edge_saw_it(
    nc: NATS,
) -> None:
    clock = Clock()
    one, two = await edges(nc, clock)
    token, _ = await one.start("acc_1", "key_1", "h")
    for turn in range(9):  # active, alternately on each edge: alive up to its lifetime
        clock.now += 59
        assert await (one, two)[turn % 2].get(token) is not None
    clock.now += 600 - 9 * 59
    assert await two.get(token) is None
    assert await one.get(token) is None

    idle, _ = await one.start("acc_1", "key_1", "h")
    clock.now += 61
    assert await two.get(idle) is None


async def test_activity_is_written_at_most_every_few_seconds(nc: NATS) -> None:
    clock = Clock()
    (store,) = await edges(nc, clock, 1)
    token, session = await store.start("acc_1", "key_1", "h")
    first = (await store.bucket.get(session.digest)).revision
    clock.now += TOUCH_EVERY / 2
    await store.get(token)
    assert (await store.bucket.get(session.digest)).revision == first
    clock.now += TOUCH_EVERY
    await store.get(token)
    assert (await store.bucket.get(session.digest)).revision > first


async def test_a_notice_saved_on_one_edge_is_read_on_another(nc: NATS) -> None:
    one, two = await edges(nc, Clock())
    token, session = await one.start("acc_1", "key_1", "h")
    session.notice = "Key revoked"
    await one.save(session)
    found = await two.get(token)
    assert found is not None and found.notice == "Key revoked"


async def test_sessions_are_unavailable_not_an_error_while_nats_is_away(
    own_nats: NatsServer,
) -> None:
    client = await nats.connect(**own_nats.options("edge"), allow_reconnect=False)
    (store,) = await edges(client, Clock(), 1)
    token, _ = await store.start("acc_1", "key_1", "h")
    await client.close()
    with pytest.raises(ApiError) as raised:
        await store.get(token)
    assert raised.value.status == 503 and raised.value.code == "SERVICE_UNAVAILABLE"


async def live(store: SessionStore, tokens: list[str]) -> list[bool]:
    return [await store.get(token) is not None for token in tokens]


async def test_an_account_has_at_most_its_cap_of_sessions_the_oldest_end(nc: NATS) -> None:
    clock = Clock()
    one, two = await edges(nc, clock, per_account=3)
    other, _ = await one.start("acc_2", "key_2", "h")
    tokens = []
    for turn in range(5):  # signed in on either edge: one list per account
        clock.now += 1
        tokens.append((await (one, two)[turn % 2].start("acc_1", "key_1", "h"))[0])
    assert await live(one, tokens) == [False, False, True, True, True]
    assert await two.get(other) is not None  # another account's sessions are its own
    listed = await one.bucket.get("account.acc_1")
    assert len(msgspec.json.decode(listed.value or b"")["sessions"]) == 3


async def test_a_session_that_ended_frees_its_place_before_a_live_one_is_ended(nc: NATS) -> None:
    clock = Clock()
    (store,) = await edges(nc, clock, 1, per_account=2)
    first, first_session = await store.start("acc_1", "key_1", "h")
    clock.now += 1
    second, _ = await store.start("acc_1", "key_1", "h")
    await store.end(first_session)  # signed out: still listed
    clock.now += 1
    third, _ = await store.start("acc_1", "key_1", "h")
    assert await live(store, [first, second, third]) == [False, True, True]
    clock.now += 61  # both idle past `idle`: ended, though still stored
    fourth, _ = await store.start("acc_1", "key_1", "h")
    clock.now += 1
    fifth, _ = await store.start("acc_1", "key_1", "h")
    assert await live(store, [fourth, fifth]) == [True, True]


async def test_sign_ins_to_one_account_on_many_edges_at_once_keep_the_cap(nc: NATS) -> None:
    clock = Clock()
    stores = await edges(nc, clock, 3, per_account=3)
    started = await asyncio.gather(*(stores[i % 3].start("acc_1", "key_1", "h") for i in range(6)))
    tokens = [token for token, _ in started]
    assert sum(await live(stores[0], tokens)) == 3  # no edge lost another's place in the list
