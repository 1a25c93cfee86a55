"""The keys service's streams keep what the bus made them with: the writer creates the key log's
streams only while they are missing, and changes nothing of an existing one but its own
settings (a relay's duplicate window). In a cluster the bus makes them with three replicas
(`aitbc-bus-config --provision --replicas 3`); a writer that made them over with its own whole
configuration would take that away."""

from __future__ import annotations

from dataclasses import replace

from aitbc_contracts.subjects import KEY_CHECKPOINTS_STREAM, KEY_EVENTS_STREAM
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import checkpoints
from aitbc_keys.outbox import ensure, ensure_stream
from tests.bus_clients import connected

NOTE = "kept by the operator"


async def test_the_writer_keeps_what_the_bus_gave_its_streams(own_nats: NatsServer) -> None:
    async with connected(own_nats, "keylog-admin") as admin:  # only it changes the log
        js = admin.jetstream()
        for stream in (KEY_EVENTS_STREAM, KEY_CHECKPOINTS_STREAM):
            found = (await js.stream_info(stream)).config
            await js.update_stream(replace(found, description=NOTE, max_msgs=1_000_000))
    async with connected(own_nats, "keys-writer") as writer:
        js = writer.jetstream()
        await ensure(js, checkpoints.stream_config())
        await ensure_stream(js, duplicate_window=0.5)  # a setting of its own: taken
        events = (await js.stream_info(KEY_EVENTS_STREAM)).config
        kept = (await js.stream_info(KEY_CHECKPOINTS_STREAM)).config
    assert (events.description, events.max_msgs, events.duplicate_window) == (NOTE, 1_000_000, 0.5)
    assert (kept.description, kept.max_msgs) == (NOTE, 1_000_000)


async def test_the_writer_makes_a_missing_stream_again(own_nats: NatsServer) -> None:
    async with connected(own_nats, "keylog-admin") as admin:
        await admin.jetstream().delete_stream(KEY_CHECKPOINTS_STREAM)
    async with connected(own_nats, "keys-writer") as writer:
        await ensure(writer.jetstream(), checkpoints.stream_config())
        made = (await writer.jetstream().stream_info(KEY_CHECKPOINTS_STREAM)).config
    assert made.subjects == checkpoints.stream_config().subjects
