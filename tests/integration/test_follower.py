"""The key event follower (aitbc_runtime.follower.Follower) against a real nats-server."""

from __future__ import annotations

import asyncio

import nats
from nats.aio.client import Client as NATS
from nats.js.api import DeliverPolicy

from aitbc_infra.nats_server import NatsServer
from aitbc_runtime.follower import Follower
from tests.cuttable_link import CuttableLink
from tests.unit import waiting

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
        async with asyncio.timeout(10):  # stored is not delivered yet: the restart could win
            while not seen:
                await asyncio.sleep(0.01)
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


async def _follow_through(link: CuttableLink, server: NatsServer) -> NATS:
    options = {**server.options(), "servers": [link.url()]}
    return await nats.connect(**options, reconnect_time_wait=0.1, max_reconnect_attempts=-1)


class Log:
    """What a follower told: the messages, resets, losses and catch-ups, in order."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def follower(self, nc: NATS) -> Follower:
        return Follower(
            nc,
            SUBJECTS,
            lambda msg: self.said.append(msg.data.decode()),
            "follow",
            on_reset=lambda: self.said.append("reset"),
            stream="FOLLOW",
            deliver_policy=DeliverPolicy.LAST,
            resume=True,
            on_lost=lambda: self.said.append("lost"),
            on_found=lambda: self.said.append("found"),
        )


async def test_a_resuming_follower_takes_what_passed_while_its_link_was_cut(
    own_nats: NatsServer,
) -> None:
    admin = await nats.connect(**own_nats.options())
    js = admin.jetstream()
    await js.add_stream(name="FOLLOW", subjects=[SUBJECTS])
    await js.publish("follow.a", b"1")
    log = Log()
    with CuttableLink(own_nats.port) as link:
        nc = await _follow_through(link, own_nats)
        follower = log.follower(nc)
        follower.start()
        try:
            await asyncio.wait_for(follower.ready.wait(), 10)
            await js.publish("follow.a", b"2")
            await waiting.until(lambda: "2" in log.said, 10)
            link.cut()
            await waiting.until(lambda: "lost" in log.said, 10)
            for data in (b"3", b"4"):  # published while this follower cannot hear
                await js.publish("follow.a", data)
            link.restore()
            await waiting.until(lambda: "found" in log.said, 20)
            await js.publish("follow.a", b"5")
            await waiting.until(lambda: "5" in log.said, 10)
        finally:
            await follower.stop()
            await nc.close()
            await admin.close()
    assert log.said == ["1", "2", "lost", "3", "4", "found", "5"]  # nothing missed, no reset


async def test_a_follower_that_cannot_resume_resets(own_nats: NatsServer) -> None:
    """What it would go on from is no longer in the stream: it says that messages may have
    passed unseen, and starts over from the last one."""
    admin = await nats.connect(**own_nats.options())
    js = admin.jetstream()
    await js.add_stream(name="FOLLOW", subjects=[SUBJECTS])
    await js.publish("follow.a", b"1")
    log = Log()
    with CuttableLink(own_nats.port) as link:
        nc = await _follow_through(link, own_nats)
        follower = log.follower(nc)
        follower.start()
        try:
            await waiting.until(lambda: "1" in log.said, 10)
            link.cut()
            await waiting.until(lambda: "lost" in log.said, 10)
            for data in (b"2", b"3"):
                await js.publish("follow.a", data)
            await js.purge_stream("FOLLOW", seq=3)  # 2 is gone before this follower saw it
            link.restore()
            await waiting.until(lambda: "3" in log.said, 20)
        finally:
            await follower.stop()
            await nc.close()
            await admin.close()
    assert log.said == ["1", "lost", "reset", "3"]
