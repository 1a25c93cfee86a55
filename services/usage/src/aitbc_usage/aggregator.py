"""Builds the per-minute aggregates from the usage stream, exactly once.

One durable pull consumer per owned partition; each batch is committed together with its
stream position (store.commit_batch), and acknowledged only after the commit. A crash
between commit and ack redelivers messages the position already covers: they are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from sqlalchemy.ext.asyncio import AsyncEngine

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


def _decode(msg: Msg) -> UsageEvent | None:
    try:
        return usage_event_decoder.decode(msg.data)
    except msgspec.MsgspecError as exc:
        log.warning("skipped a malformed usage event: %s", exc)
        return None


class Aggregator:
    def __init__(
        self,
        nc: NATS,
        engine: AsyncEngine,
        partitions: tuple[int, ...],
        batch: int,
        ack_wait: float = 30.0,
    ) -> None:
        self.nc = nc
        self.ack_wait = ack_wait  # unacknowledged (uncommitted) batches come back after this
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
        while True:
            subscription = None
            try:
                subscription = await self.nc.jetstream().pull_subscribe(
                    f"{USAGE_EVENTS_PREFIX}.{partition}.>",
                    durable=name,
                    stream=USAGE_STREAM,
                    config=ConsumerConfig(
                        ack_policy=AckPolicy.ALL, max_ack_pending=100_000, ack_wait=self.ack_wait
                    ),
                )
                while True:
                    try:
                        messages = await subscription.fetch(self.batch, timeout=1.0)
                    except (NatsTimeoutError, TimeoutError):
                        continue
                    if messages:
                        await self.commit(name, messages)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("aggregator %s failed; retrying", name)
                await asyncio.sleep(1.0)
            finally:
                if subscription is not None:
                    # Unread fetch replies would hold up the connection's drain until it times out.
                    with contextlib.suppress(Exception):
                        await subscription.unsubscribe()

    async def commit(self, name: str, messages: list[Msg]) -> None:
        events = [(msg.metadata.sequence.stream, _decode(msg)) for msg in messages]
        await store.commit_batch(self.engine, name, events)
        await messages[-1].ack()  # AckPolicy.ALL: acknowledges the whole batch
