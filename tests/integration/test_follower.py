"""The key event follower (aitbc_runtime.bus.Follower) against a real nats-server."""

from __future__ import annotations

import asyncio

import nats

from aitbc_infra.nats_server import NatsServer
from aitbc_runtime.bus import Follower

SUBJECTS = "follow.>"


async def test_a_follower_resets_after_a_reconnect_but_not_when_stopped(
    own_nats: NatsServer,
) -> None:
    # A stream of the test's own, which no role of the system has: an operator makes it.
    options = own_nats.options()
    nc = await nats.connect(**options, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    await nc.jetstream().add_stream(name="FOLLOW", subjects=[SUBJECTS])
    seen: list[bytes] = []
    resets: list[int] = []
    follower = Follower(
        nc, SUBJECTS, lambda msg: seen.append(msg.data), "follow", on_reset=lambda: resets.append(1)
    )
    follower.start()
    try:
        await asyncio.wait_for(follower.ready.wait(), 10)
        await nc.jetstream().publish("follow.a", b"1")
        own_nats.restart()  # the consumer may be gone: events may pass unseen
        async with asyncio.timeout(20):
            while not resets:
                await asyncio.sleep(0.05)
            while b"2" not in seen:  # following again, from now: what it sees once subscribed
                await nc.jetstream().publish("follow.a", b"2")
                await asyncio.sleep(0.1)
        assert seen[0] == b"1"
    finally:
        await follower.stop()
        await nc.close()
    # Stopping is no reset: a keys service would start reading its store as it shuts down.
    assert resets == [1]
