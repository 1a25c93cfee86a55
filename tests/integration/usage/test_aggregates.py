"""Aggregates from the usage stream: exactly once across crashes, redeliveries and restarts."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS

from aitbc_contracts.messages import Code, Rejected
from aitbc_contracts.subjects import (
    USAGE_QUERY,
    USAGE_STREAM,
    partition_of,
    usage_batch_subject,
    usage_event_subject,
)
from aitbc_contracts.usage import LastUsedQuery, UsageBatch, UsageQuery, usage_events_of
from aitbc_gate import metrics
from aitbc_gate.usage_events import UsagePublisher
from aitbc_usage import store
from tests.integration.usage.conftest import System
from tests.integration.usage.usage_records import (
    T0,
    account_on,
    counted_through,
    event,
    publish,
    served,
    totals,
    wait_requests,
)
from tests.scrape import registered


@pytest.fixture
def usage_database_url(database_url: str) -> str:
    """The aggregates on SQLite and on PostgreSQL alike."""
    return database_url


async def test_the_stream_is_counted_once_across_crashes_and_restarts(system: System) -> None:
    account = "acc_" + uuid.uuid4().hex[:16]
    batch_one = [event(account) for _ in range(30)] + [
        event(account, status=429, decision="limited")
    ] * 1
    async with system.usage() as service:
        await publish(system.operator, batch_one)
        assert (await wait_requests(service.engine, account, 31))["requests"] == 31

        # A crash after the commit, before anything else: the same messages come again.
        messages = []
        sub = await system.operator.jetstream().subscribe(
            usage_event_subject(account), stream=USAGE_STREAM, ordered_consumer=True
        )
        for _ in range(31):
            messages.append(await sub.next_msg(timeout=5))
        await sub.unsubscribe()
        name = f"usage-aggregator-{partition_of(account)}"
        replay = [
            (name, msg.metadata.sequence.stream, usage_events_of(msg.data)) for msg in messages
        ]
        await store.commit_batch(service.engine, [name], replay)
        assert (await totals(service.engine, account))["requests"] == 31

    # Events published while no usage service runs are counted when it is back, once.
    await publish(system.operator, [event(account, status=404) for _ in range(9)])
    async with system.usage() as service:
        counted = await wait_requests(service.engine, account, 40)
        await counted_through(system.operator, service.engine, partition_of(account))
        assert (
            await totals(service.engine, account)
            == counted
            == {
                "requests": 40,
                "admitted": 39,
                "limited": 1,
                "4xx": 10,
            }
        )


async def test_malformed_messages_are_skipped_and_counting_goes_on(system: System) -> None:
    account = "acc_" + uuid.uuid4().hex[:16]
    js = system.operator.jetstream()
    refused = refused_events()
    async with system.usage() as service:
        for payload in [
            b"",
            b"{",
            b'{"type": "usage.request.v1"}',
            b"\xff" * 64,
            msgspec.json.encode({**msgspec.to_builtins(event(account)), "status": "x"}),
        ]:
            await js.publish(usage_event_subject(account), payload)
        await publish(system.operator, [event(account) for _ in range(3)])
        assert (await wait_requests(service.engine, account, 3))["requests"] == 3
        # Each message refused each time it is read: once, or again if the aggregator's
        # consumer was recreated on a loaded machine (its counts, kept by event, stay exact).
        again = refused_events() - refused
        assert again >= 5 and again % 5 == 0, again


async def test_the_edge_buffers_usage_events_while_nats_is_away_and_counts_drops(
    system: System,
) -> None:
    account = "acc_" + uuid.uuid4().hex[:16]
    async with system.usage() as service:
        nc = await nats.connect(
            **system.nats.options("edge"), max_reconnect_attempts=-1, reconnect_time_wait=0.2
        )
        publisher = UsagePublisher(nc, capacity=50, batch=10)
        publisher.start()
        dropped_before = metrics.USAGE_EVENTS_DROPPED._value.get()
        system.nats.stop()
        for _ in range(60):
            publisher.emit(served(account))
        assert len(publisher.buffer) == 50
        assert metrics.USAGE_EVENTS_DROPPED._value.get() - dropped_before == 10
        system.nats.start()
        counted = await wait_requests(service.engine, account, 50)
        info = await system.operator.jetstream().stream_info("AITBC_USAGE")
        assert counted["requests"] == 50 and not publisher.buffer, (
            info.state,
            len(publisher.buffer),
        )
        await publisher.stop()
        await nc.close()


def refused_events() -> float:
    return registered("aitbc_usage_events_refused_total")


async def test_one_consumer_resumes_each_partition_from_its_own_cursor(system: System) -> None:
    a, b = account_on(3), account_on(11)
    # A process owning only partition 3 counts a; b's partition lags behind, at 0.
    async with system.usage(partitions=(3,)) as service:
        await publish(system.operator, [event(a) for _ in range(5)] + [event(b) for _ in range(4)])
        assert (await wait_requests(service.engine, a, 5))["requests"] == 5
        await counted_through(system.operator, service.engine, 3)  # read past b's events
        assert (await totals(service.engine, b))["requests"] == 0
    # Owning both, it reads again from the lowest cursor: b's events once, a's not again.
    await publish(system.operator, [event(a) for _ in range(2)] + [event(b)])
    async with system.usage(partitions=(3, 11)) as service:
        assert (await wait_requests(service.engine, b, 5))["requests"] == 5
        assert (await wait_requests(service.engine, a, 7))["requests"] == 7
        await counted_through(system.operator, service.engine, 11)
        assert (await totals(service.engine, a))["requests"] == 7
        assert (await totals(service.engine, b))["requests"] == 5
        async with service.engine.connect() as conn:
            names = [f"usage-aggregator-{p}" for p in (3, 11, 12)]
            stored = await store.cursors(conn, names)
        info = await system.operator.jetstream().stream_info("AITBC_USAGE")
        # Both owned cursors are at the end of the stream; one not owned is not moved.
        assert stored == {names[0]: info.state.last_seq, names[1]: info.state.last_seq, names[2]: 0}


class AckLost(UsagePublisher):
    """Each batch is stored, but its first ack is lost: the publisher must retry it."""

    def __init__(self, nc: NATS) -> None:
        super().__init__(nc, capacity=1000, batch=50, linger=0.01)
        self.attempts: list[tuple[str, bytes]] = []

    async def _publish(self, batches):  # type: ignore[no-untyped-def]
        self.attempts += [(b.msg_id, b.payload) for b in batches]
        stored = await super()._publish(batches)
        first = [b for b in batches if self.attempts.count((b.msg_id, b.payload)) == 1]
        return stored + [b for b in first if b not in stored]


async def test_a_retried_batch_is_stored_and_counted_once(system: System) -> None:
    account, other = account_on(5), account_on(9)
    async with system.usage() as service:
        publisher = AckLost(system.edge)
        publisher.start()
        for _ in range(30):
            publisher.emit(served(account))
            publisher.emit(served(other, status=404))
        while publisher.buffer or publisher.unsent:  # its own loop retries
            await asyncio.sleep(0.05)
        await publisher.stop()
        # Every batch went out twice, the same bytes under the same id...
        sent = set(publisher.attempts)
        assert len(publisher.attempts) == 2 * len(sent)
        assert {len({p for i, p in sent if i == msg_id}) for msg_id, _ in sent} == {1}
        # ...and the stream kept one copy of each: counted once.
        assert (await wait_requests(service.engine, account, 30))["requests"] == 30
        assert (await wait_requests(service.engine, other, 30))["4xx"] == 30
        info = await system.operator.jetstream().stream_info("AITBC_USAGE")
        assert info.state.messages == len(sent)
        await counted_through(system.operator, service.engine, 5)
        assert (await totals(service.engine, account))["requests"] == 30


async def test_a_batch_with_a_malformed_event_counts_the_rest_and_goes_on(
    system: System,
) -> None:
    account = account_on(7)
    good = [msgspec.to_builtins(event(account)) for _ in range(3)]
    bad = [
        {**good[0], "event_id": "naive", "at": "2026-11-29T12:00:00"},
        {**good[0], "event_id": "wide", "key_id": "k" * 65},
        {"type": "usage.request.v1", "event_id": "bare"},
    ]
    js = system.edge.jetstream()  # a broken edge: its role may publish any batch
    refused = refused_events()
    async with system.usage() as service:
        mixed = {"type": "usage.batch.v1", "events": [good[0], *bad, good[1]]}
        await js.publish(usage_batch_subject(7), msgspec.json.encode(mixed))
        assert (await wait_requests(service.engine, account, 2))["requests"] == 2
        # Its bad events, each refused alone, not the batch (and once more each if the
        # aggregator's consumer was recreated meanwhile and read the batch again: the counts,
        # kept by event, do not move, but each reading refuses them again).
        again = refused_events() - refused
        assert again >= 3 and again % 3 == 0, again
        # The partition is not jammed: the next batch, and a single event, are counted too.
        later = UsageBatch(events=[event(account), event(account)])
        await js.publish(usage_batch_subject(7), msgspec.json.encode(later))
        old = system.operator.jetstream()  # a single event, as older edges published them
        await old.publish(usage_event_subject(account), msgspec.json.encode(good[2]))
        assert (await wait_requests(service.engine, account, 5))["requests"] == 5
        await counted_through(system.operator, service.engine, 7)
        assert (await totals(service.engine, account))["requests"] == 5


async def test_single_events_and_batches_in_one_stream_are_both_counted(system: System) -> None:
    account = account_on(2)
    await publish(system.operator, [event(account) for _ in range(4)])  # as older edges did
    publisher = UsagePublisher(system.edge, capacity=100, linger=0.01)
    publisher.start()
    for _ in range(6):
        publisher.emit(served(account, status=404))
    await publisher.stop()
    async with system.usage() as service:
        counted = await wait_requests(service.engine, account, 10)
        assert counted == {"requests": 10, "admitted": 10, "limited": 0, "4xx": 6}


async def test_an_event_whose_time_has_no_utc_date_is_refused_and_counting_goes_on(
    system: System,
) -> None:
    """Year 1 an hour east of UTC is year 0 there, and 9999-12-31 late an hour west is year
    10000: Python's datetime holds neither, so the database driver could not convert such a
    time to UTC to store a key's last use. Every commit of the batch holding one failed, and
    the aggregator, reading it again from the same position each time, counted nothing more
    on any partition it held."""
    account = account_on(5)
    good = msgspec.to_builtins(event(account))
    edge_times = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
    bad = [
        {**good, "event_id": f"e{n}", "key_id": f"k{n}", "at": at}
        for n, at in enumerate(edge_times)
    ]
    await counted_beside(system, account, good, bad)


async def test_an_event_with_a_nul_in_an_id_is_refused_and_counting_goes_on(
    system: System,
) -> None:
    """PostgreSQL's text holds no NUL character: a key or account id with one failed every
    commit of its batch, and the aggregator counted nothing more on any partition it held."""
    account = account_on(6)
    good = msgspec.to_builtins(event(account))
    bad = [{**good, "event_id": "k", "key_id": "key_\x00"}, {**good, "account_id": "acc_\x00"}]
    await counted_beside(system, account, good, bad)


async def test_a_usage_query_with_a_nul_is_refused_as_invalid(system: System) -> None:
    """PostgreSQL's text holds no NUL character: a query naming an id with one failed in the
    database, logged as a failure of the service and answered SERVICE_UNAVAILABLE."""
    async with system.usage():
        for query in (
            UsageQuery("acc_\x00", T0, T0),
            UsageQuery("acc_x", T0, T0, key_id="key_\x00"),
            LastUsedQuery("acc_\x00"),
        ):
            reply = await system.edge.request(USAGE_QUERY, msgspec.json.encode(query), timeout=5)
            assert msgspec.json.decode(reply.data, type=Rejected).code == Code.VALIDATION_ERROR


async def counted_beside(system: System, account: str, good: dict, bad: list[dict]) -> None:
    """A batch of `good` and the `bad` events, then two more of `account`'s: the bad ones are
    refused alone, and the three good ones counted (a broken edge: its role may publish any
    batch)."""
    js, subject = system.edge.jetstream(), usage_batch_subject(partition_of(account))
    refused = refused_events()
    async with system.usage() as service:
        mixed = {"type": "usage.batch.v1", "events": [good, *bad]}
        await js.publish(subject, msgspec.json.encode(mixed))
        later = UsageBatch(events=[event(account), event(account)])
        await js.publish(subject, msgspec.json.encode(later))
        assert (await wait_requests(service.engine, account, 3))["requests"] == 3
        assert refused_events() - refused >= len(bad)
