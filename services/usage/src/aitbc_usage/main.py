"""Composition root: engine, NATS, plan book, deciding, aggregator; `aitbc-usage` runs it.

One NATS connection per process, the FastStream broker's, and the operators' listener
(/metrics, aitbc_usage.metrics) when USAGE_METRICS_PORT is set. Its one subscriber is the usage
queries (low rate: FastStream's per-message cost does not matter there). Everything else uses
the same connection bare, through nats-py: the decide and settle subjects (the hot path, where
FastStream's consume path cost about as much as deciding a whole batch), the key event reader,
the usage stream's consumer and the counters' KV bucket.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from faststream.nats import NatsBroker
from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import messages as m
from aitbc_contracts.plans import PlanTable, as_table
from aitbc_contracts.subjects import (
    KEYS_READ_COMMANDS,
    USAGE_QUERY,
    USAGE_QUEUE,
    usage_decide_subject,
)
from aitbc_contracts.usage import LastUsedQuery
from aitbc_runtime.broker import service_broker
from aitbc_runtime.bus import until_answered
from aitbc_runtime.commands import KeysCommands
from aitbc_runtime.key_events import KeyEventReader
from aitbc_runtime.metrics import metrics_listener
from aitbc_runtime.plan_reload import watching
from aitbc_runtime.process import run_service
from aitbc_runtime.sql import create_engine
from aitbc_runtime.summed import sampled
from aitbc_usage import metrics, store
from aitbc_usage.aggregator import Aggregator
from aitbc_usage.handlers import Deciding
from aitbc_usage.partitions import Partitions
from aitbc_usage.plans import PlanBook, keys_lookup
from aitbc_usage.queries import Querying
from aitbc_usage.settings import Settings, get_settings
from aitbc_usage.snapshots import Snapshotter, counters

log = logging.getLogger("aitbc.usage")


@dataclass
class Service:
    settings: Settings
    engine: AsyncEngine
    nc: NATS
    deciding: Deciding
    aggregator: Aggregator
    partitions: Partitions


def build_broker(settings: Settings, querying: Querying) -> NatsBroker:
    """FastStream for the queries; decisions, the hot path, are bare nats-py (Answering)."""
    broker = service_broker(settings.nats, "aitbc-usage")

    @broker.subscriber(USAGE_QUERY, queue=USAGE_QUEUE)
    async def query(body: bytes) -> bytes:
        return await querying.query(body)

    return broker


def plan_table(settings: Settings) -> PlanTable:
    """The plans file's plans, else the per-minute limits (PLAN_LIMITS)."""
    return PlanTable(settings.plans_file) if settings.plans_file else as_table(settings.plan_limits)


@asynccontextmanager
async def counting(nc: NATS, engine: AsyncEngine, settings: Settings) -> AsyncIterator[Service]:
    """Deciding for the partitions the leases give this process, their counts restored as
    they come, and their aggregates. What it starts stops in reverse order, the partitions
    first (handed over with their last counts saved); all before the connection drains."""
    replicas = settings.nats.replicas
    table = plan_table(settings)  # a plans file that does not validate stops the start here
    plans = PlanBook(keys_lookup(KeysCommands(nc, settings.keys_timeout, KEYS_READ_COMMANDS)))
    deciding = Deciding(plans, table)
    async with contextlib.AsyncExitStack() as running:
        await running.enter_async_context(watching(table))
        reader = KeyEventReader(nc, [plans], "usage-plan-events")
        reader.start()
        running.push_async_callback(reader.stop)
        aggregator = Aggregator(
            nc, engine, (), settings.aggregate_batch, settings.aggregate_interval
        )  # it follows the partitions held
        running.push_async_callback(aggregator.stop)
        snapshots = Snapshotter(nc, deciding, settings.snapshot_interval, replicas)
        snapshots.start()
        running.push_async_callback(snapshots.stop)
        partitions = Partitions(
            nc,
            deciding,
            await counters(nc, replicas),
            aggregator,
            settings.partitions,
            lease_seconds=settings.lease_seconds,
            replicas=replicas,
        )
        await partitions.start()
        running.push_async_callback(partitions.stop)
        for partition in settings.partitions:  # held here or elsewhere: someone answers
            await until_answered(nc, usage_decide_subject(partition), b'{"items": []}')
        sampled(metrics.PARTITIONS_OWNED, partitions.owned)
        sampled(metrics.SNAPSHOT_AGE, snapshots.age)
        sampled(metrics.AGGREGATES_LAG, aggregator.lag)
        await running.enter_async_context(
            metrics_listener(settings.metrics_host, settings.metrics_port)
        )
        log.info(
            "usage service ready: holds %d of %d partitions, %d restored from snapshots",
            len(deciding.windows),
            len(settings.partitions),
            partitions.restored,
        )
        yield Service(settings, engine, nc, deciding, aggregator, partitions)


@asynccontextmanager
async def running_service(settings: Settings | None = None) -> AsyncIterator[Service]:
    settings = settings or get_settings()
    engine = create_engine(settings.database_url)
    try:
        await store.prepare(engine)
        broker = build_broker(settings, Querying(engine))
        await broker.start()  # connects, and answers the queries from now on
        try:
            nc = broker.connection
            await until_answered(nc, USAGE_QUERY, m.encoder.encode(LastUsedQuery("acc_ready")))
            async with counting(nc, engine, settings) as service:
                yield service
        finally:
            await broker.stop()  # drains the connection: the last answers go out
    finally:
        await engine.dispose()


def run() -> None:
    settings = get_settings()
    run_service(lambda: running_service(settings), "aitbc-usage", settings.log_level)
