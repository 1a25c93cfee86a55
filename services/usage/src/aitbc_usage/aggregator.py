"""Builds the per-minute aggregates from the usage stream, exactly once.

The database, not the consumer, remembers how far each partition has been counted: each batch
is committed together with its stream position (store.commit_batch). On start, and after any
failure, an ordered consumer is opened just after that position, so messages arrive once and
in order; a redelivery at or before the position is skipped. (A durable consumer with acks
would redeliver an unacknowledged message *after* newer ones, and a position could pass it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.bus import reconnects
from aitbc_contracts.subjects import (
    USAGE_AGGREGATOR_DURABLE,
    USAGE_EVENTS_PREFIX,
    USAGE_EVENTS_SUBJECTS,
    USAGE_STREAM,
)
from aitbc_contracts.usage import UsageEvent, usage_event_decoder
from aitbc_usage import store

log = logging.getLogger("aitbc.usage.aggregator")

USAGE_STREAM_CONFIG = StreamConfig(
    name=USAGE_STREAM,
    subjects=[USAGE_EVENTS_SUBJECTS],
    retention=RetentionPolicy.LIMITS,  # analytics consumers read it too: keep, don't work-queue
    storage=StorageType.FILE,
    max_age=7 * 24 * 3600,
    duplicate_window=120,  # a retried publish with the same request id is stored once
)


async def ensure_usage_stream(nc: NATS) -> None:
    js = nc.jetstream()
    try:
        await js.add_stream(USAGE_STREAM_CONFIG)
    except Exception:
        await js.update_stream(USAGE_STREAM_CONFIG)


MAX_ID = 64  # the width of the aggregates' id columns


def _implausible(event: UsageEvent) -> str:
    """What makes a decodable event one the aggregates cannot take (it would fail its batch
    on every retry, and stop the partition's counting for good), or ""."""
    if event.at.utcoffset() is None:
        return "`at` has no UTC offset"
    if len(event.account_id) > MAX_ID or len(event.key_id) > MAX_ID:
        return f"an id longer than {MAX_ID} characters"
    return ""


def _decode(msg: Msg) -> UsageEvent | None:
    try:
        event = usage_event_decoder.decode(msg.data)
    except msgspec.MsgspecError as exc:
        log.warning("skipped a malformed usage event: %s", exc)
        return None
    problem = _implausible(event)
    if problem:
        log.warning("skipped a malformed usage event: %s", problem)
        return None
    return event


class Aggregator:
    def __init__(
        self,
        nc: NATS,
        engine: AsyncEngine,
        partitions: tuple[int, ...],
        batch: int,
    ) -> None:
        self.nc = nc
        self.engine = engine
        self.partitions = partitions
        self.batch = batch
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(p), name=f"aggregate-{p}") for p in self.partitions
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, partition: int) -> None:
        name = f"{USAGE_AGGREGATOR_DURABLE}-{partition}"
        subject = f"{USAGE_EVENTS_PREFIX}.{partition}.>"
        while True:
            subscription = None
            try:
                seen = reconnects(self.nc)
                async with self.engine.connect() as conn:
                    position = await store.cursor(conn, name)
                subscription = await self.nc.jetstream().subscribe(
                    subject,
                    stream=USAGE_STREAM,
                    ordered_consumer=True,
                    config=ConsumerConfig(
                        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                        opt_start_seq=position + 1,
                    ),
                )
                while True:
                    await self.commit(name, await self._next_batch(subscription, seen))
            except asyncio.CancelledError:
                raise
            except ConnectionResetError:
                log.info("aggregator %s: reconnected; resuming from its stored position", name)
            except Exception:
                log.exception("aggregator %s failed; resuming from its stored position", name)
                await asyncio.sleep(1.0)
            finally:
                if subscription is not None:
                    with contextlib.suppress(Exception):
                        await subscription.unsubscribe()

    async def _next_batch(
        self, subscription: JetStreamContext.PushSubscription, seen: int
    ) -> list[Msg]:
        """Waits for one message, then takes what else has arrived, up to a batch."""
        while True:
            try:
                batch = [await subscription.next_msg(timeout=0.25)]
                break
            except (NatsTimeoutError, TimeoutError):
                if reconnects(self.nc) != seen:  # the server may have lost this consumer
                    raise ConnectionResetError("reconnected") from None
        while len(batch) < self.batch:
            try:
                batch.append(await subscription.next_msg(timeout=0.005))
            except (NatsTimeoutError, TimeoutError):
                break
        return batch

    async def commit(self, name: str, messages: list[Msg]) -> None:
        events = [(msg.metadata.sequence.stream, _decode(msg)) for msg in messages]
        await store.commit_batch(self.engine, name, events)
