"""The outbox relay against a real nats-server, on SQLite and PostgreSQL: every committed event
once, in order. "No duplicate" is checked only after a marker event appended last has been seen
through by every relay: whatever a relay would have sent again, it has sent by then."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from msgspec.structs import replace
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.events import AnyEvent, decode_event
from aitbc_contracts.subjects import HASH_HEADER, KEY_EVENTS_STREAM, key_event_subject
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import store
from aitbc_keys.outbox import OutboxRelay
from aitbc_runtime.bus_access import BusAccess
from tests.bus_clients import connected
from tests.integration.keys.helpers import (
    Connect,
    append_keys,
    assert_exactly_once_in_order,
    assert_settled_exactly_once,
    wait_for_stream,
)


class Crash(Exception):
    """The relay's process dies here."""


async def test_committed_events_reach_the_stream_in_order_exactly_once(
    engine: AsyncEngine,
    auditor: BusAccess,
    connect: Connect,
    history_of: Any,
    stream_contents: Any,
) -> None:
    expected = await append_keys(engine, history_of, keys=20, events=3)
    relay = OutboxRelay(engine, await connect(), poll_interval=30)
    relay.start()
    try:
        contents = await wait_for_stream(auditor, stream_contents, 60)
        assert_exactly_once_in_order(contents, expected)

        # The payload is the event itself, on the event's account/stream subject.
        nc = await connect()
        msg = await nc.jetstream().get_msg(KEY_EVENTS_STREAM, seq=contents[4][0])
        [record] = await store.records_after(engine, 4, limit=1)
        assert msg.data == record.data  # the stored bytes, verbatim: what the chain covers
        assert (msg.headers or {})[HASH_HEADER] == record.chain_hash
        assert replace(decode_event(msg.data), prev_hash="") == expected[4]
        assert msg.subject == key_event_subject(expected[4].account_id, expected[4].stream_id)

        # Idle with a 30 s poll: an append plus wake() must still arrive at once.
        more = await append_keys(engine, history_of, keys=1, events=1)
        started = time.monotonic()
        relay.wake()
        contents = await wait_for_stream(auditor, stream_contents, 61, timeout=2)
        assert time.monotonic() - started < 1.0
        assert_exactly_once_in_order(contents, expected + more)
        assert relay.published == 61
    finally:
        await relay.stop()


async def test_a_relay_killed_between_publish_and_progress_loses_and_repeats_nothing(
    engine: AsyncEngine,
    auditor: BusAccess,
    connect: Connect,
    history_of: Any,
    stream_contents: Any,
) -> None:
    expected = await append_keys(engine, history_of, keys=10, events=2)
    published: list[int] = []

    async def crash_on_the_seventh(position: int, event: AnyEvent) -> None:
        published.append(position)
        if len(published) == 7:
            raise Crash

    relay = OutboxRelay(engine, await connect(), after_publish=crash_on_the_seventh)
    with pytest.raises(Crash):
        await asyncio.wait_for(relay.run(), 10)
    assert published == list(range(1, 8))
    assert relay.position == 6  # it died before recording the 7th

    restarted = OutboxRelay(engine, await connect(), poll_interval=0.1)
    restarted.start()
    try:
        await wait_for_stream(auditor, stream_contents, 20)
        await assert_settled_exactly_once(
            engine, history_of, stream_contents, auditor, expected, restarted
        )
        assert restarted.published == 13 + 1  # resumed after the 7th, did not resend it
    finally:
        await restarted.stop()


async def test_a_cancelled_relay_resumes_from_the_stream(
    engine: AsyncEngine,
    auditor: BusAccess,
    connect: Connect,
    history_of: Any,
    stream_contents: Any,
) -> None:
    expected = await append_keys(engine, history_of, keys=30, events=1)
    fifth = asyncio.Event()

    async def stuck_after_the_fifth(position: int, event: AnyEvent) -> None:
        if position >= 5:  # published, not yet recorded as such: the relay hangs here
            fifth.set()
            await asyncio.Event().wait()

    relay = OutboxRelay(engine, await connect(), after_publish=stuck_after_the_fifth)
    task = relay.start()
    await asyncio.wait_for(fifth.wait(), 10)
    task.cancel()  # between a publish and its progress: the next one resends the fifth
    await relay.stop()
    assert len(await wait_for_stream(auditor, stream_contents, 5)) == 5

    restarted = OutboxRelay(engine, await connect())
    restarted.start()
    try:
        await wait_for_stream(auditor, stream_contents, 30)
        await assert_settled_exactly_once(
            engine, history_of, stream_contents, auditor, expected, restarted
        )
    finally:
        await restarted.stop()


async def test_a_stopped_relay_ends_after_its_batch_and_gives_its_database_connection_back(
    engine: AsyncEngine,
    auditor: BusAccess,
    connect: Connect,
    history_of: Any,
    stream_contents: Any,
) -> None:
    await append_keys(engine, history_of, keys=40, events=1)

    async def slow(position: int, event: AnyEvent) -> None:
        await asyncio.sleep(0.01)

    nc = await connect()
    relay = OutboxRelay(engine, nc, batch_size=5, after_publish=slow)
    task = relay.start()
    while relay.published < 7:  # in its second batch
        await asyncio.sleep(0.005)
    await relay.stop()
    assert task.done() and not task.cancelled()  # it ended on its own, not cancelled
    assert relay.published == 10  # the batch it was in, and no more
    assert engine.pool.checkedout() == 0  # cancelled in a read, one would be lost
    # read from the readers' mirror, which may be a moment behind the log
    assert len(await wait_for_stream(auditor, stream_contents, 10)) == 10
    assert nc.is_connected  # the connection is the process's: the relay leaves it open


async def test_two_relays_at_once_still_publish_each_event_once_in_order(
    engine: AsyncEngine,
    auditor: BusAccess,
    connect: Connect,
    history_of: Any,
    stream_contents: Any,
) -> None:
    relays = [OutboxRelay(engine, await connect(), poll_interval=0.05) for _ in range(2)]
    for relay in relays:
        relay.start()
    try:
        expected: list[AnyEvent] = []
        for _ in range(40):  # append while both relays race for the same events
            expected += await append_keys(engine, history_of, keys=1, events=2)
            for relay in relays:
                relay.wake()
            await asyncio.sleep(0.002)
        await wait_for_stream(auditor, stream_contents, 80)
        await assert_settled_exactly_once(
            engine, history_of, stream_contents, auditor, expected, *relays
        )
        # Each message the stream took was one relay's: who won which race is not our call.
        assert sum(r.published for r in relays) == 81
    finally:
        for relay in relays:
            await relay.stop()


async def test_the_relay_survives_a_nats_server_restart(
    engine: AsyncEngine,
    own_nats: NatsServer,
    auditor: BusAccess,
    connect: Connect,
    history_of: Any,
    stream_contents: Any,
) -> None:
    relay = OutboxRelay(engine, await connect(), poll_interval=0.1)
    relay.start()
    try:
        expected = await append_keys(engine, history_of, keys=5)
        relay.wake()
        assert len(await wait_for_stream(auditor, stream_contents, 10)) == 10
        own_nats.stop()
        expected += await append_keys(engine, history_of, keys=5)  # committed while NATS is down
        relay.wake()
        await asyncio.sleep(0.5)
        own_nats.start()
        expected += await append_keys(engine, history_of, keys=5)
        relay.wake()
        await wait_for_stream(auditor, stream_contents, 30, timeout=20)
        await assert_settled_exactly_once(
            engine, history_of, stream_contents, auditor, expected, relay
        )
        assert not relay._task.done()  # type: ignore[union-attr]
    finally:
        await relay.stop()


async def test_a_deleted_stream_is_republished_whole(
    engine: AsyncEngine,
    own_nats: NatsServer,
    auditor: BusAccess,
    connect: Connect,
    history_of: Any,
    stream_contents: Any,
) -> None:
    expected = await append_keys(engine, history_of, keys=5)
    relay = OutboxRelay(engine, await connect())
    relay.start()
    await wait_for_stream(auditor, stream_contents, 10)
    await relay.stop()

    # The log itself is in KEYLOG, and only its own admin may delete it: `admin` can
    # delete only the readers' mirrors. The relay's refill is checked in the log; the
    # mirrors keep what they hold (the same events) and follow the log again once their
    # consumers are made again (provisioning: tests/integration/test_bus_mirrors.py).
    async with connected(own_nats, "keylog-admin") as keylog:
        await keylog.jetstream().delete_stream(KEY_EVENTS_STREAM)
    log = own_nats.access("keylog-admin")

    relay = OutboxRelay(engine, await connect())
    relay.start()
    try:
        await wait_for_stream(log, stream_contents, 10)
        await assert_settled_exactly_once(engine, history_of, stream_contents, log, expected, relay)
    finally:
        await relay.stop()


async def test_a_stale_relay_cannot_republish_after_the_dedup_window(
    engine: AsyncEngine,
    auditor: BusAccess,
    connect: Connect,
    history_of: Any,
    stream_contents: Any,
) -> None:
    """Msg-id de-duplication forgets after its window; the expected sequence never does."""
    expected = await append_keys(engine, history_of, keys=5)
    resume = asyncio.Event()

    async def stall_after_the_second(position: int, event: AnyEvent) -> None:
        if position == 2:
            await resume.wait()  # a long GC pause, a frozen VM...

    window = 0.3
    stale = OutboxRelay(
        engine, await connect(), after_publish=stall_after_the_second, duplicate_window=window
    )
    stale.start()
    await wait_for_stream(auditor, stream_contents, 2)
    other = OutboxRelay(engine, await connect(), duplicate_window=window)
    other.start()
    try:
        await wait_for_stream(auditor, stream_contents, 10)
        await asyncio.sleep(window * 3)  # the stream has forgotten the message ids
        resume.set()
        # The stale relay tries its 3rd, is refused, re-reads the stream: then it is at 10.
        async with asyncio.timeout(20):
            while stale.position != 10:
                await asyncio.sleep(0.02)
        assert_exactly_once_in_order(await stream_contents(auditor), expected)
        assert stale.published == 2 and other.published == 8
    finally:
        await stale.stop()
        await other.stop()
