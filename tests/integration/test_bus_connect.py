"""aitbc_runtime.bus.connect against real nats-servers: a process waits for the bus as long as
it was told and no longer, is refused at once for credentials the bus refuses, and once
connected reconnects when its server comes back."""

from __future__ import annotations

import asyncio
import time

import pytest

from aitbc_infra.nats_server import NatsServer, free_port
from aitbc_runtime.bus import connect
from aitbc_runtime.bus_access import BusAccess


async def test_an_unreachable_bus_is_waited_for_as_long_as_told() -> None:
    nowhere = BusAccess(url=f"nats://127.0.0.1:{free_port()}")
    started = time.monotonic()
    async with asyncio.timeout(15):  # nats-py alone would retry its first connection forever
        with pytest.raises(Exception):  # noqa: B017 (nats-py's or the OS's, as it happens)
            await connect(nowhere, "waiting", wait=1.0)
    assert time.monotonic() - started < 10


async def test_refused_credentials_are_not_waited_for(nats_server: NatsServer) -> None:
    anonymous = BusAccess(url=nats_server.url)  # the bus requires a role's nkey
    started = time.monotonic()
    async with asyncio.timeout(15):
        with pytest.raises(Exception, match="Authorization Violation"):
            await connect(anonymous, "anonymous", wait=60.0)
    assert time.monotonic() - started < 10


async def test_once_connected_it_reconnects_when_its_server_comes_back(
    own_nats: NatsServer,
) -> None:
    nc = await connect(own_nats.access("edge"), "reconnecting", wait=5.0)
    try:
        own_nats.stop()
        own_nats.start()
        async with asyncio.timeout(20):
            while nc.stats["reconnects"] == 0 or not nc.is_connected:
                await asyncio.sleep(0.1)
        await nc.flush(timeout=5)
    finally:
        await nc.close()
