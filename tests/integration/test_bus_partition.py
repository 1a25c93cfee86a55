"""A silent partition (packets dropped, nothing closed) is noticed by the client's pings within
about twenty seconds, not nats-py's default of minutes: until then an edge trusts its cached
keys, and the stale bound (AUTH_STALE_MAX) counts only from then."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aitbc_infra.nats_server import NatsServer
from aitbc_runtime.bus import connect
from tests.cuttable_link import CuttableLink
from tests.unit import waiting


async def test_a_silent_partition_is_noticed_by_unanswered_pings(own_nats: NatsServer) -> None:
    with CuttableLink(own_nats.port) as link:
        nc = await connect(replace(own_nats.access("edge"), url=link.url()), "partitioned")
        try:
            await nc.flush()
            link.stall()
            started = asyncio.get_running_loop().time()
            await waiting.until(lambda: not nc.is_connected, 30, every=0.1)
            noticed = asyncio.get_running_loop().time() - started
        finally:
            await nc.close()
    assert noticed <= 22  # a ping every 5 s, the third unanswered one: 15-20 s
