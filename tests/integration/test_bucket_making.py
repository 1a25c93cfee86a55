"""A service's start makes its buckets (aitbc_runtime.bus.key_value) on a real nats-server, and
waits for a JetStream that does not answer at first (a cluster's meta leader, busy or being
elected) instead of failing: here the server is stopped (SIGSTOP) past the first ask's timeout."""

from __future__ import annotations

import asyncio
import signal

from nats.js.api import KeyValueConfig

from aitbc_contracts.subjects import KEYS_LEASES_BUCKET
from aitbc_infra.nats_server import NatsServer
from aitbc_runtime.bus import key_value
from tests.bus_clients import connected


async def test_a_bucket_is_made_once_jetstream_answers_again(own_nats: NatsServer) -> None:
    assert own_nats.process is not None
    async with connected(own_nats, "keys") as nc:
        own_nats.process.send_signal(signal.SIGSTOP)
        try:
            making = asyncio.create_task(key_value(nc, KeyValueConfig(bucket=KEYS_LEASES_BUCKET)))
            await asyncio.sleep(6)  # past the first ask's 5 s
            assert not making.done(), making
        finally:
            own_nats.process.send_signal(signal.SIGCONT)
        bucket = await asyncio.wait_for(making, 30)
        await bucket.put("member.x", b"alive")
        assert (await bucket.get("member.x")).value == b"alive"
