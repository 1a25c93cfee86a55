"""The outbox relay's lag and publish failures against a real nats-server, on SQLite and
PostgreSQL: the events committed and not yet in the key event stream, as the relay goes, while
the bus is away, and once it is back. Read from the process's registry, as /metrics renders
them."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.events import AnyEvent
from aitbc_infra.nats_server import NatsServer
from aitbc_keys.outbox import OutboxRelay
from aitbc_runtime.bus_access import BusAccess
from tests.integration.keys.helpers import Connect, append_keys, wait_for_stream
from tests.scrape import registered
from tests.unit.waiting import until

LAG = "aitbc_keys_relay_lag_events"
FAILURES = "aitbc_keys_relay_publish_failures_total"


async def test_the_lag_falls_as_the_relay_publishes_and_is_0_once_it_has(
    engine: AsyncEngine,
    auditor: BusAccess,
    connect: Connect,
    history_of: Any,
    stream_contents: Any,
) -> None:
    await append_keys(engine, history_of, keys=5)  # positions 1-10
    at_the_fourth, go_on = asyncio.Event(), asyncio.Event()

    async def hold_the_fourth(position: int, event: AnyEvent) -> None:
        if position == 4:
            at_the_fourth.set()
            await go_on.wait()

    relay = OutboxRelay(engine, await connect(), poll_interval=30, after_publish=hold_the_fourth)
    relay.start()
    try:
        await asyncio.wait_for(at_the_fourth.wait(), 10)
        assert registered(LAG) == 7  # 1-3 are known to be in the stream; 4-10 are not yet
        go_on.set()
        assert len(await wait_for_stream(auditor, stream_contents, 10)) == 10
        await until(lambda: registered(LAG) == 0, timeout=20, every=0.05)
        await append_keys(engine, history_of, keys=1)
        relay.wake()
        assert len(await wait_for_stream(auditor, stream_contents, 12)) == 12
        await until(lambda: registered(LAG) == 0, timeout=20, every=0.05)
    finally:
        await relay.stop()
    assert registered(LAG) == 0  # a relay that stopped says nothing of the others'


async def test_the_lag_grows_while_nats_is_away_and_failures_are_counted(
    engine: AsyncEngine,
    own_nats: NatsServer,
    auditor: BusAccess,
    connect: Connect,
    history_of: Any,
    stream_contents: Any,
) -> None:
    relay = OutboxRelay(engine, await connect(), poll_interval=0.1, publish_timeout=1.0)
    relay.start()
    try:
        await append_keys(engine, history_of, keys=2)
        relay.wake()
        assert len(await wait_for_stream(auditor, stream_contents, 4)) == 4
        failed = registered(FAILURES)
        own_nats.stop()
        await append_keys(engine, history_of, keys=3)  # committed while NATS is away
        relay.wake()
        await until(lambda: registered(LAG) == 6, timeout=20, every=0.05)
        assert registered(FAILURES) > failed
        own_nats.start()
        assert len(await wait_for_stream(auditor, stream_contents, 10, timeout=30)) == 10
        await until(lambda: registered(LAG) == 0, timeout=20, every=0.05)
    finally:
        await relay.stop()
