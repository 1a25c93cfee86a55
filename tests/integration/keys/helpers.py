"""Helpers of the keys service's integration tests: appends as the service makes them, and
what the outbox relay tests wait for and check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.events import AnyEvent
from aitbc_keys import store
from aitbc_keys.facts import FactsIndex
from aitbc_keys.outbox import OutboxRelay
from aitbc_keys.service_layer.unit_of_work import SqlUnitOfWork
from aitbc_keys.store import Batch
from aitbc_runtime.bus_access import BusAccess
from tests.key_histories import H, Log

Connect = Callable[[], Awaitable[Client]]  # a new NATS connection, as a service makes it


async def commit(engine: AsyncEngine, batches: Sequence[Batch]) -> None:
    """Append as the service does: the log and the SQL read model in one transaction."""
    await SqlUnitOfWork(engine, FactsIndex(), lambda _: None, datetime.now(UTC)).commit(batches)


async def append_keys(
    engine: AsyncEngine,
    history_of: Any,
    keys: int,
    events: int = 2,
) -> list[AnyEvent]:
    appended: list[AnyEvent] = []
    for _ in range(keys):
        history = history_of(events)
        await store.append(engine, [(history[0].stream_id, 0, history)])
        appended.extend(history)
    return appended


async def wait_for_stream(
    access: BusAccess, stream_contents: Any, count: int, timeout: float = 10.0
) -> list[tuple[int, str, int]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            contents = await stream_contents(access)
        except Exception:  # the server may be restarting
            contents = []
        if len(contents) >= count or time.monotonic() > deadline:
            return contents  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)


async def settled(
    engine: AsyncEngine,
    history_of: Any,
    stream_contents: Any,
    access: BusAccess,
    *relays: OutboxRelay,
) -> list[AnyEvent]:
    """Appends a marker event and waits until the stream has it and every relay has seen
    through it; returns the marker."""
    marker = await append_keys(engine, history_of, keys=1, events=1)
    last = await store.last_position(engine)
    for relay in relays:
        relay.wake()
    async with asyncio.timeout(20):
        while not all(relay.position == last for relay in relays):
            await asyncio.sleep(0.02)
    await wait_for_stream(access, stream_contents, last)
    return marker


def assert_exactly_once_in_order(
    contents: list[tuple[int, str, int]], expected: list[AnyEvent]
) -> None:
    assert [eid for _, eid, _ in contents] == [e.event_id for e in expected]
    assert [pos for _, _, pos in contents] == list(range(1, len(expected) + 1))


async def assert_settled_exactly_once(
    engine: AsyncEngine,
    history_of: Any,
    stream_contents: Any,
    access: BusAccess,
    expected: list[AnyEvent],
    *relays: OutboxRelay,
) -> None:
    """Once a marker appended last has been seen through by every relay (`settled`), the
    stream holds `expected` and the marker, each once, in order: whatever a relay would have
    sent again, it has sent by then."""
    marker = await settled(engine, history_of, stream_contents, access, *relays)
    assert_exactly_once_in_order(await stream_contents(access), expected + marker)


async def committed_key(engine: AsyncEngine) -> Log:
    """A log of one account with one key (key_1, secret H[1]), committed to the store."""
    log = Log()
    log.account("acc_a")
    log.key("acc_a", "key_1", H[1])
    for event, _ in log.delivery:
        await commit(engine, [(event.stream_id, event.version - 1, [event])])
    return log
