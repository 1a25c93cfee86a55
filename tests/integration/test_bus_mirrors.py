"""Every mirror follows a durable consumer of its own on its source (aitbc_infra.bus_mirrors):
made by provisioning, repaired by it, and the mirrors made before them made again."""

from __future__ import annotations

import asyncio

from nats.js.api import AckPolicy, ExternalStream, StorageType, StreamConfig, StreamSource

from aitbc_contracts import subjects as s
from aitbc_infra.bus_accounts import mirror_consumer, mirror_delivery, mirrors
from aitbc_infra.bus_stores import ACCOUNTS, KEYLOG_ACCOUNT, READ_ACCOUNT, STORES
from aitbc_infra.bus_streams import ADMINS, jetstream, provision, source_config
from aitbc_infra.nats_server import NatsServer
from tests.bus_clients import connected
from tests.integration.test_key_log_account import write

EVERY_MIRROR = [(account, stream) for account in ACCOUNTS for stream in mirrors(account)]


async def held(server: NatsServer, account: str, stream: str) -> tuple[int, int]:
    """What `account`'s copy of `stream` holds, as its admin reads it: (messages, last seq)."""
    async with connected(server, ADMINS[account]) as nc:
        state = (await jetstream(nc, account).stream_info(stream)).state
        return state.messages, state.last_seq


async def all_hold(server: NatsServer, count: int, stream: str = s.KEY_EVENTS_STREAM) -> None:
    """Every copy of `stream` holds `count` messages, numbered 1 to `count`, within 10 s."""
    copies = [KEYLOG_ACCOUNT] + [a for a, x in EVERY_MIRROR if x == stream]
    async with asyncio.timeout(10):
        for account in copies:
            while await held(server, account, stream) != (count, count):
                await asyncio.sleep(0.05)


async def provisioned(server: NatsServer) -> list[str]:
    return await provision(server.access("keylog-admin"), server.access("admin"))


async def test_each_mirror_follows_a_consumer_of_its_own(own_nats: NatsServer) -> None:
    await write(own_nats, 3)
    await all_hold(own_nats, 3)
    for account, stream in EVERY_MIRROR:
        source = STORES[stream].account
        async with connected(own_nats, ADMINS[account]) as nc:
            mirror = (await jetstream(nc, account).stream_info(stream)).config.mirror
        assert mirror is not None and mirror.consumer is not None, (account, stream)
        assert mirror.consumer.name == mirror_consumer(account)
        async with connected(own_nats, ADMINS[source]) as nc:
            consumer = await jetstream(nc, source).consumer_info(stream, mirror.consumer.name)
        assert consumer.config.ack_policy == AckPolicy.FLOW_CONTROL
        assert consumer.config.deliver_subject == mirror.consumer.deliver_subject
    assert await provisioned(own_nats) == []  # again: nothing to do


async def test_a_mirror_of_an_ephemeral_consumer_is_made_again(own_nats: NatsServer) -> None:
    """As deployments provisioned before mirrors had consumers of their own left them."""
    await write(own_nats, 2)
    async with connected(own_nats, "admin") as nc:
        js = jetstream(nc, READ_ACCOUNT)
        await js.delete_stream(s.KEY_EVENTS_STREAM)
        external = ExternalStream(api=s.KEYLOG_API, deliver=s.KEYLOG_DELIVER_PREFIX)
        source = StreamSource(name=s.KEY_EVENTS_STREAM, external=external)
        old = StreamConfig(name=s.KEY_EVENTS_STREAM, mirror=source, storage=StorageType.FILE)
        await js.add_stream(old)
    assert await provisioned(own_nats) == [f"READ {s.KEY_EVENTS_STREAM} (mirror): made"]
    await write(own_nats, 1)
    await all_hold(own_nats, 3)


async def test_a_lost_consumer_is_made_again_from_its_mirrors_next_message(
    own_nats: NatsServer,
) -> None:
    await write(own_nats, 2)
    await all_hold(own_nats, 2)
    async with connected(own_nats, "keylog-admin") as nc:
        await nc.jetstream().delete_consumer(s.KEY_EVENTS_STREAM, mirror_consumer(READ_ACCOUNT))
    await write(own_nats, 1)
    assert await provisioned(own_nats) == [
        f"READ {s.KEY_EVENTS_STREAM} (mirror): its consumer made again"
    ]
    await write(own_nats, 1)
    await all_hold(own_nats, 4)  # the one written while it had none too, and none twice


async def test_an_answer_sent_to_a_mirrors_delivery_subject_is_not_stored(
    own_nats: NatsServer,
) -> None:
    """A delivery subject is known (not random, as an ephemeral consumer's was), and a reader
    may name it as the reply of a request its account answers: the answer is published there,
    in the mirror's account. It carries no acknowledgement subject of the mirror's consumer,
    so the mirror takes nothing from it."""
    await write(own_nats, 1)
    await all_hold(own_nats, 1)
    delivery = mirror_delivery(READ_ACCOUNT, s.KEY_EVENTS_STREAM)
    async with connected(own_nats, "auditor") as nc:
        for _ in range(3):  # the stream's info, as JSON, and a message of the log, as stored
            await nc.publish(f"$JS.API.STREAM.INFO.{s.KEY_EVENTS_STREAM}", b"", reply=delivery)
            get = f"$JS.API.STREAM.MSG.GET.{s.KEY_EVENTS_STREAM}"
            await nc.publish(get, b'{"seq": 1}', reply=delivery)
        await nc.flush()
    await asyncio.sleep(0.5)
    await write(own_nats, 1)
    await all_hold(own_nats, 2)  # numbered 1 and 2, as the log


async def test_mirrors_follow_a_deleted_log_again_once_provisioned(own_nats: NatsServer) -> None:
    """The mirrors' consumers go with their source; the relay makes the log again (here: its
    admin) at the same sequences, and provisioning the mirrors' consumers, from each mirror's
    next message."""
    await write(own_nats, 2)
    await all_hold(own_nats, 2)
    async with connected(own_nats, "keylog-admin") as nc:
        await nc.jetstream().delete_stream(s.KEY_EVENTS_STREAM)
        await nc.jetstream().add_stream(source_config(s.KEY_EVENTS_STREAM))
    await write(own_nats, 3)  # the two again, and a new one
    remade = [a for a, stream in EVERY_MIRROR if stream == s.KEY_EVENTS_STREAM]
    assert await provisioned(own_nats) == [
        f"{account} {s.KEY_EVENTS_STREAM} (mirror): its consumer made again" for account in remade
    ]
    await all_hold(own_nats, 3)
