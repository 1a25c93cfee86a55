"""The key event log in its own account (aitbc_infra.bus_streams), on a real nats-server with
the real configuration: what its writer stores reaches the readers' mirror at once, readers
follow the mirror by name, the admin (in ADMIN) writes nothing into the log, and the
admins can still repair both."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.aio.msg import Msg
from nats.js.errors import NoStreamResponseError

from aitbc_contracts import subjects as s
from aitbc_infra.bus_mirrors import ProvisionError
from aitbc_infra.bus_streams import provision
from aitbc_infra.nats_server import NatsServer
from aitbc_runtime.follower import Follower
from tests.bus_clients import connected

EVENT = s.key_event_subject("acc_0000000000000000", "key_0000000000000000")
CHECKPOINT = f"{s.KEY_CHECKPOINTS_PREFIX}.1"


async def messages(server: NatsServer, role: str, stream: str = s.KEY_EVENTS_STREAM) -> int:
    async with connected(server, role) as nc:
        return (await nc.jetstream().stream_info(stream)).state.messages


async def write(server: NatsServer, count: int) -> None:
    async with connected(server, "keys-writer") as writer:
        for number in range(count):
            await writer.jetstream().publish(EVENT, str(number).encode())


async def test_a_reader_follows_the_mirror_by_name_and_gets_each_event_at_once(
    own_nats: NatsServer,
) -> None:
    arrived: list[float] = []
    async with connected(own_nats, "edge") as edge, connected(own_nats, "keys-writer") as writer:

        def on_message(msg: Msg) -> None:
            arrived.append(time.monotonic())

        follower = Follower(
            edge, s.KEY_EVENTS_SUBJECTS, on_message, "test", stream=s.KEY_EVENTS_STREAM
        )
        follower.start()
        await asyncio.wait_for(follower.ready.wait(), 10)
        delays = []
        for number in range(20):
            sent = time.monotonic()
            await writer.jetstream().publish(EVENT, str(number).encode())
            async with asyncio.timeout(5):
                while len(arrived) <= number:
                    await asyncio.sleep(0.0005)
            delays.append(arrived[number] - sent)
        await follower.stop()
    delays.sort()
    assert delays[len(delays) // 2] < 0.05, f"median {delays[len(delays) // 2] * 1000:.1f} ms"


async def test_an_admin_rebuilds_a_lost_mirror_from_the_log(own_nats: NatsServer) -> None:
    await write(own_nats, 3)
    async with connected(own_nats, "admin") as admin:
        await admin.jetstream().purge_stream(s.KEY_EVENTS_STREAM)  # what a bad answer could do
        await admin.jetstream().delete_stream(s.KEY_EVENTS_STREAM)
    await provision(own_nats.access("keylog-admin"), own_nats.access("admin"))
    async with asyncio.timeout(10):
        while await messages(own_nats, "admin") < 3:
            await asyncio.sleep(0.05)
    assert await messages(own_nats, "keylog-admin") == 3


async def test_the_key_logs_own_admin_repairs_the_log(own_nats: NatsServer) -> None:
    await write(own_nats, 2)
    async with connected(own_nats, "keylog-admin") as admin:
        await admin.jetstream().delete_msg(s.KEY_EVENTS_STREAM, 1)
    assert await messages(own_nats, "keylog-admin") == 1


async def test_provisioning_refuses_a_stream_in_a_mirrors_place(own_nats: NatsServer) -> None:
    """A writable stream of that name in a reader's account would take PubAcks and answers."""
    async with connected(own_nats, "admin") as admin:
        await admin.jetstream().delete_stream(s.KEY_EVENTS_STREAM)
        await admin.jetstream().add_stream(name=s.KEY_EVENTS_STREAM, subjects=[EVENT])
    with pytest.raises(ProvisionError, match="not the mirror"):
        await provision(own_nats.access("keylog-admin"), own_nats.access("admin"))


@pytest.mark.parametrize(
    ("subject", "stream"), [(EVENT, s.KEY_EVENTS_STREAM), (CHECKPOINT, s.KEY_CHECKPOINTS_STREAM)]
)
async def test_the_main_accounts_admin_stores_nothing_in_the_key_log(
    own_nats: NatsServer, subject: str, stream: str
) -> None:
    """`admin` may publish anything in its account, but the log is in KEYLOG and the mirror
    has no subjects: so no role but the log's writer and its own admin can forge an event or
    a checkpoint (the other roles' publishes are refused: test_bus_permissions.py)."""
    async with connected(own_nats, "admin") as admin:
        await admin.publish(subject, b"{}")
        with pytest.raises(NoStreamResponseError):  # no stream of its account takes it
            await admin.jetstream().publish(subject, b"{}", stream=stream, timeout=1)
    async with connected(own_nats, "keylog-admin") as keylog:  # the test can see a message
        await keylog.jetstream().publish(subject, b"{}", stream=stream)
    async with asyncio.timeout(10):
        while await messages(own_nats, "admin", stream) < 1:
            await asyncio.sleep(0.02)
    assert await messages(own_nats, "keylog-admin", stream) == 1
    assert await messages(own_nats, "admin", stream) == 1
