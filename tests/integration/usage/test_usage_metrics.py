"""The usage service's gauges against a real nats-server: the partitions it decides for, the age
of its snapshots while they cannot be saved, and the usage stream's messages its aggregates
have not counted yet. Read from the process's registry, as /metrics renders them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.subjects import USAGE_STREAM, usage_batch_subject
from aitbc_contracts.usage import UsageBatch
from aitbc_contracts.windows import Windows
from aitbc_infra.nats_server import NatsServer
from aitbc_runtime.sql import create_engine
from aitbc_usage import store
from aitbc_usage.aggregator import Aggregator
from aitbc_usage.handlers import Deciding
from aitbc_usage.plans import PlanBook
from aitbc_usage.snapshots import Snapshotter
from tests.integration.usage.conftest import System
from tests.integration.usage.usage_records import account_on, event, totals
from tests.scrape import registered
from tests.unit.waiting import until


@pytest.fixture
async def usage_nc(own_nats: NatsServer) -> AsyncIterator[NATS]:
    """A connection as the usage service's role, reconnecting for as long as a test needs."""
    nc = await nats.connect(
        **own_nats.options("usage"), max_reconnect_attempts=-1, reconnect_time_wait=0.1
    )
    yield nc
    await nc.close()


async def test_the_partitions_held_are_counted_while_the_service_runs(system: System) -> None:
    async with system.usage(partitions=(0, 1, 2, 3)):
        owned = "aitbc_usage_partitions_owned"
        await until(lambda: registered(owned) == 4, timeout=15, every=0.05)
        assert registered("aitbc_usage_snapshot_age_seconds") < 2  # saved every 0.05 s here
    assert registered(owned) == 0  # handed over as it stopped


async def test_the_snapshot_age_grows_while_the_counts_cannot_be_saved(
    own_nats: NatsServer, usage_nc: NATS
) -> None:
    async def no_plans(account: str) -> str | None:
        return None

    deciding = Deciding(PlanBook(no_plans), {"free": 60})
    deciding.windows[4] = Windows()
    snapshots = Snapshotter(usage_nc, deciding, interval=0.05)
    snapshots.start()
    try:
        deciding.dirty.add(4)  # counted since the last save
        await until(lambda: not deciding.dirty and snapshots.age() < 0.5, timeout=15, every=0.05)
        own_nats.stop()
        deciding.dirty.add(4)
        await asyncio.sleep(1.5)
        assert snapshots.age() > 1.0  # not saved since the bus went
        own_nats.start()
        await until(lambda: snapshots.age() < 0.5, timeout=15, every=0.05)  # saved again
    finally:
        await snapshots.stop()


class HeldCommits(Aggregator):
    """An aggregator whose commits wait until the test lets them go."""

    def __init__(self, nc: NATS, engine: AsyncEngine, partition: int) -> None:
        super().__init__(nc, engine, (partition,), batch=10, interval=0.05)
        self.go = asyncio.Event()

    async def commit(self, messages: list[store.Message]) -> None:
        await self.go.wait()
        await super().commit(messages)


@pytest.fixture
async def usage_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}")
    await store.prepare(engine)
    yield engine
    await engine.dispose()


async def test_the_aggregates_lag_counts_the_messages_not_yet_committed(
    own_nats: NatsServer, usage_nc: NATS, usage_engine: AsyncEngine
) -> None:
    partition = 6
    account = account_on(partition)
    edge = await nats.connect(**own_nats.options("edge"))
    try:
        for _ in range(30):  # each message a batch of two events
            batch = UsageBatch(events=[event(account), event(account)])
            await edge.jetstream().publish(
                usage_batch_subject(partition), msgspec.json.encode(batch)
            )
    finally:
        await edge.close()
    # Until the usage service's mirror of the stream holds them all: else the consumer's
    # count of what is pending, taken as it delivers, could be short of them
    async with asyncio.timeout(10):
        while (await usage_nc.jetstream().stream_info(USAGE_STREAM)).state.messages < 30:
            await asyncio.sleep(0.02)
    aggregator = HeldCommits(usage_nc, usage_engine, partition)
    assert aggregator.lag() == 0  # not following anything yet
    aggregator.start()
    try:
        # 5 in the commit held up and 5 in the inbox, full again (10 events each), and the
        # 20 the consumer has yet to give it
        await until(lambda: aggregator.lag() == 30, timeout=15, every=0.05)
        assert (await totals(usage_engine, account))["requests"] == 0
        aggregator.go.set()
        await until(lambda: aggregator.lag() == 0, timeout=15, every=0.05)
        assert (await totals(usage_engine, account))["requests"] == 60
    finally:
        await aggregator.stop()
    assert aggregator.lag() == 0
