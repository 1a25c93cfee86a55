"""Composition root: engine, NATS, plan book, deciding, aggregator; `aitbc-usage` runs it."""

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
from aitbc_contracts.subjects import (
    KEY_EVENTS_SUBJECTS,
    KEYS_COMMANDS,
    USAGE_QUERY,
    USAGE_QUEUE,
    usage_decide_subject,
)
from aitbc_contracts.usage import LastUsedQuery
from aitbc_runtime.broker import service_broker
from aitbc_runtime.bus import Follower, connect, until_answered
from aitbc_runtime.process import run_service
from aitbc_runtime.sql import create_engine
from aitbc_usage import store
from aitbc_usage.aggregator import Aggregator, ensure_usage_stream
from aitbc_usage.handlers import Deciding, Querying, answer_decisions
from aitbc_usage.plans import PlanBook
from aitbc_usage.settings import Settings, get_settings
from aitbc_usage.snapshots import Snapshotter, restore

log = logging.getLogger("aitbc.usage")


@dataclass
class Service:
    settings: Settings
    engine: AsyncEngine
    nc: NATS
    deciding: Deciding
    aggregator: Aggregator


def plan_lookup(nc: NATS, timeout: float):  # type: ignore[no-untyped-def]
    """Asks the keys service for an account's plan: None when there is no such account."""

    async def lookup(account_id: str) -> str | None:
        reply = await nc.request(
            KEYS_COMMANDS, m.encoder.encode(m.GetAccount(account_id=account_id)), timeout=timeout
        )
        answer = m.reply_decoder.decode(reply.data)
        if isinstance(answer, m.AccountView):
            return answer.plan
        if isinstance(answer, m.Rejected) and answer.code == m.Code.NOT_FOUND:
            return None
        raise RuntimeError(f"keys service answered {answer!r}")

    return lookup


def build_broker(settings: Settings, querying: Querying) -> NatsBroker:
    """FastStream for the queries; decisions, the hot path, are bare nats-py (answer_decisions)."""
    broker = service_broker(settings.nats_url, "aitbc-usage")

    @broker.subscriber(USAGE_QUERY, queue=USAGE_QUEUE)
    async def query(body: bytes) -> bytes:
        return await querying.query(body)

    return broker


@asynccontextmanager
async def running_service(settings: Settings | None = None) -> AsyncIterator[Service]:
    settings = settings or get_settings()
    engine = create_engine(settings.database_url)
    try:
        await store.prepare(engine)
        nc = await connect(settings.nats_url, "aitbc-usage")
        try:
            await ensure_usage_stream(nc)
            plans = PlanBook(plan_lookup(nc, settings.keys_timeout))
            follower = Follower(
                nc,
                KEY_EVENTS_SUBJECTS,
                lambda msg: plans.learn(msg.data),
                "usage-plan-events",
                on_reset=plans.forget,
            )
            follower.start()
            deciding = Deciding(plans, settings.plan_limits, settings.partitions)
            restored = await restore(nc, deciding)
            snapshots = Snapshotter(nc, deciding, settings.snapshot_interval)
            snapshots.start()
            aggregator = Aggregator(
                nc,
                engine,
                settings.partitions,
                settings.aggregate_batch,
                settings.aggregate_interval,
            )
            aggregator.start()
            broker = build_broker(settings, Querying(engine))
            await broker.start()
            deciders = await answer_decisions(nc, deciding, settings.partitions)
            await until_answered(nc, USAGE_QUERY, m.encoder.encode(LastUsedQuery("acc_ready")))
            for partition in settings.partitions:
                await until_answered(nc, usage_decide_subject(partition), b'{"items": []}')
            log.info(
                "usage service ready: %d partitions, %d restored from snapshots",
                len(settings.partitions),
                restored,
            )
            try:
                yield Service(settings, engine, nc, deciding, aggregator)
            finally:
                for subscription in deciders:
                    with contextlib.suppress(Exception):  # the connection may be gone already
                        await subscription.unsubscribe()
                await broker.stop()
                await snapshots.stop()
                await aggregator.stop()
                await follower.stop()
        finally:
            await nc.drain()
    finally:
        await engine.dispose()


def run() -> None:
    settings = get_settings()
    run_service(lambda: running_service(settings), "aitbc-usage", settings.log_level)
