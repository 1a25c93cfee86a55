"""Builds the per-minute aggregates from the usage stream, exactly once.

The usage stream is in the usage service's NATS account (the edges publish into it through a
service import): the service reads the stream itself, by name, with no mirror between
(aitbc_infra.bus_roles says why).

The database, not the consumer, remembers how far each partition has been counted: each flush
is committed together with every owned partition's stream position (store.commit_batch). On
start, and after any failure, one ordered consumer over all owned partitions is opened just
after the lowest of those positions, so messages arrive once and in order; a message at or
before its own partition's position is skipped. (A durable consumer with acks would redeliver
an unacknowledged message *after* newer ones, and a position could pass it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.subjects import (
    USAGE_AGGREGATOR_DURABLE,
    USAGE_EVENTS_SUBJECTS,
    USAGE_PARTITIONS,
    USAGE_STREAM,
    usage_partition_subjects,
)
from aitbc_contracts.usage import usage_events_of
from aitbc_runtime.bus import ORDERED_HEARTBEAT, reconnects
from aitbc_runtime.process import cancel_and_wait
from aitbc_usage import store
from aitbc_usage.metrics import EVENTS_REFUSED

log = logging.getLogger("aitbc.usage.aggregator")


class _Inbox:
    """What the consumer delivered since the last commit, decoded. Its callback waits while
    the inbox is full, so during a slow commit the consumer's flow control holds the server
    back instead of messages piling up in memory."""

    def __init__(self, owned: dict[str, str], limit: int) -> None:
        self.owned = owned  # partition token of the subject -> its cursor's name
        self.limit = limit
        self.messages: list[store.Message] = []
        self.events = 0
        self.pending = 0  # messages the consumer still had to deliver after the last one put
        self._room = asyncio.Event()
        self._room.set()
        self._full = asyncio.Event()
        self.failure: Exception | None = None

    async def put(self, msg: Msg) -> None:
        if not self._room.is_set():
            await self._room.wait()
        try:
            self.pending = msg.metadata.num_pending
            name = self.owned.get(msg.subject.split(".", 4)[3])
            if name is None:  # not a partition's subject (the stream's subject space is wider)
                return
            problems: list[str] = []
            events = usage_events_of(msg.data, problems)
            for problem in problems:  # the rest of its batch is counted all the same
                log.warning("skipped a malformed usage event: %s", problem)
            EVENTS_REFUSED.inc(len(problems))
            # A message with no readable event still moves its cursor on: kept, empty.
            self.messages.append((name, msg.metadata.sequence.stream, events))
            self.events += len(events)
        except Exception as exc:  # nats-py would only log it, and the message be passed over
            self.failure = exc
        if self.failure or self.events >= self.limit or len(self.messages) >= self.limit:
            self._full.set()
            self._room.clear()

    async def take(self, wait: float) -> list[store.Message]:
        """Waits until the inbox is full, or `wait` seconds, and empties it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._full.wait()
        if self.failure is not None:
            raise self.failure
        taken, self.messages, self.events = self.messages, [], 0
        self._full.clear()
        self._room.set()
        return taken


class Aggregator:
    """One ordered consumer over every owned partition, committing once per flush: up to
    `batch` events, or what came within `interval` seconds."""

    def __init__(
        self,
        nc: NATS,
        engine: AsyncEngine,
        partitions: tuple[int, ...],
        batch: int,
        interval: float = 0.2,
    ) -> None:
        self.nc = nc
        self.engine = engine
        self.partitions = partitions
        self.batch = batch
        self.interval = interval
        self.names = {str(p): f"{USAGE_AGGREGATOR_DURABLE}-{p}" for p in partitions}
        self._task: asyncio.Task[None] | None = None
        self._inbox: _Inbox | None = None  # the running consumer's
        self._committing = 0  # messages taken from it, their commit not yet done

    def lag(self) -> int:
        """Messages of the partitions followed not yet counted (aitbc_usage.metrics): those
        the consumer had still to deliver when it gave the last one, and those given since
        and not yet committed. Right after a start it includes the messages re-read to reach
        the slowest partition's position, which are skipped, not counted again."""
        inbox = self._inbox
        if self._task is None or inbox is None:
            return 0
        return inbox.pending + len(inbox.messages) + self._committing

    def start(self) -> None:
        if self.partitions:
            self._task = asyncio.create_task(self._run(), name="aggregate")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
            self._inbox = None

    async def follow(self, partitions: tuple[int, ...]) -> None:
        """Counts these partitions from now on (they moved): each from its stored position."""
        if partitions != self.partitions:
            await self.stop()
            self.partitions = partitions
            self.names = {str(p): f"{USAGE_AGGREGATOR_DURABLE}-{p}" for p in partitions}
            self.start()

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except ConnectionResetError:
                log.info("aggregator reconnected; resuming from the stored positions")
            except Exception:
                log.exception("aggregator failed; resuming from the stored positions")
                await asyncio.sleep(1.0)

    def _consumer(self, start: int) -> ConsumerConfig:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        if len(self.partitions) < USAGE_PARTITIONS:  # else the stream's subject: one filter
            config.filter_subjects = [usage_partition_subjects(p) for p in self.partitions]
        return config

    async def _follow(self) -> None:
        """Reads from just after the lowest stored position (a message at or before its own
        partition's position is skipped at commit) until a failure or a reconnect."""
        seen = reconnects(self.nc)
        async with self.engine.connect() as conn:
            positions = await store.cursors(conn, self.names.values())
        inbox = _Inbox(self.names, self.batch)  # one per subscription: none outlives its own
        self._inbox, self._committing = inbox, 0
        subscription = await self.nc.jetstream().subscribe(
            USAGE_EVENTS_SUBJECTS,
            stream=USAGE_STREAM,
            cb=inbox.put,
            ordered_consumer=True,
            idle_heartbeat=ORDERED_HEARTBEAT,
            config=self._consumer(min(positions.values()) + 1),
        )
        try:
            while True:
                messages = await inbox.take(self.interval)
                if reconnects(self.nc) != seen:  # the server may have lost the consumer
                    raise ConnectionResetError("reconnected")
                self._committing = len(messages)
                await self.commit(messages)
                self._committing = 0
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def commit(self, messages: list[store.Message]) -> None:
        await store.commit_batch(self.engine, self.names.values(), messages)
