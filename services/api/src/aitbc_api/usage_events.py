"""Usage events leave the edge off the response's critical path: buffered, batched, retried.

Each flush publishes one `UsageBatch` per partition, not one message per request: the stream,
nats-server and the aggregator pay per message. A batch, once formed, is retried as it is
(same bytes, same `Nats-Msg-Id`), so the stream's de-duplication stores it once however
often the ack was lost; and no newer batch goes out before it, so a partition keeps its order.
The buffer is bounded; what does not fit is counted as dropped, never silently lost. While
NATS or the usage stream is away, events wait and go out when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client as NATS

from aitbc_api import metrics
from aitbc_contracts.subjects import MSG_ID_HEADER, partition_of, usage_batch_subject
from aitbc_contracts.usage import UsageBatch, UsageEvent

log = logging.getLogger("aitbc.api.usage_events")
_encode = msgspec.json.Encoder().encode
MAX_BATCH_BYTES = 512 * 1024  # well inside NATS's default max_payload (1 MB), with headers


@dataclass(frozen=True)
class _Batch:
    subject: str
    msg_id: str
    payload: bytes
    size: int  # events


class UsagePublisher:
    """`batch`: events a flush takes at most; `linger`: how long a flush waits for more."""

    def __init__(self, nc: NATS, capacity: int, batch: int = 500, linger: float = 0.1) -> None:
        self.nc = nc
        self.capacity = capacity
        self.batch = batch
        self.linger = linger
        self.buffer: deque[UsageEvent] = deque()
        self.unsent: list[_Batch] = []  # formed but not yet stored: retried exactly as they are
        self._unsent_events = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def emit(self, event: UsageEvent) -> None:
        if len(self.buffer) + self._unsent_events >= self.capacity:
            metrics.inc("aitbc_usage_events_dropped_total")
            log.error("usage buffer full (%d): event dropped", self.capacity)
            return
        if not self.buffer:  # the publisher waits for an event only with none buffered
            self._wake.set()
        self.buffer.append(event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-publisher")

    def _keep(self, batches: list[_Batch]) -> None:
        self.unsent = batches
        self._unsent_events = sum(batch.size for batch in batches)

    def _form(self) -> list[_Batch]:
        """Up to `batch` buffered events as one batch per partition, in order. A batch that
        would be too large to publish keeps its first half; the rest goes back to the front."""
        groups: dict[int, list[UsageEvent]] = {}
        partitions: dict[str, int] = {}  # a hash per account in the flush, not per event
        for _ in range(min(self.batch, len(self.buffer))):
            event = self.buffer.popleft()
            partition = partitions.get(event.account_id)
            if partition is None:
                partition = partitions[event.account_id] = partition_of(event.account_id)
            groups.setdefault(partition, []).append(event)
        batches: list[_Batch] = []
        later: list[UsageEvent] = []
        for partition, events in groups.items():
            payload = _encode(UsageBatch(events=events))
            tail: list[UsageEvent] = []
            while len(payload) > MAX_BATCH_BYTES and len(events) > 1:
                half = len(events) // 2
                events, tail = events[:half], events[half:] + tail
                payload = _encode(UsageBatch(events=events))
            later.extend(tail)
            if len(payload) > MAX_BATCH_BYTES:  # one event alone: it could never be stored
                metrics.inc("aitbc_usage_events_dropped_total")
                log.error("usage event of %d bytes dropped: too large to publish", len(payload))
                continue
            subject = usage_batch_subject(partition)
            batches.append(_Batch(subject, uuid.uuid4().hex, payload, len(events)))
        self.buffer.extendleft(reversed(later))
        return batches

    async def _publish(self, batches: list[_Batch]) -> list[_Batch]:
        """Publishes concurrently (one batch per partition); returns those not stored."""
        js = self.nc.jetstream()
        results = await asyncio.gather(
            *(js.publish(b.subject, b.payload, headers={MSG_ID_HEADER: b.msg_id}) for b in batches),
            return_exceptions=True,
        )
        failed = []
        for batch, result in zip(batches, results, strict=True):
            if isinstance(result, BaseException):
                failed.append(batch)
            else:
                metrics.inc("aitbc_usage_events_published_total", by=batch.size)
        return failed

    async def _flush(self) -> bool:
        """Publishes what is unsent, else a new flush's batches; False when some failed."""
        if not self.unsent:
            self._keep(self._form())  # kept before the await: a cancelled publish is retried
        self._keep(await self._publish(self.unsent))
        return not self.unsent

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self.unsent:
                if not self.buffer:
                    self._wake.clear()
                    await self._wake.wait()
                if len(self.buffer) < self.batch:
                    await asyncio.sleep(self.linger)  # gather a flush, not one event each
            if await self._flush():
                backoff = 0.1
                continue
            log.warning(
                "usage stream unavailable; %d events waiting",
                len(self.buffer) + self._unsent_events,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def stop(self, flush_seconds: float = 5.0) -> None:
        """Stop, publishing what is still buffered (for up to `flush_seconds`)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_seconds):
                while self.buffer or self.unsent:
                    if not await self._flush():
                        await asyncio.sleep(0.1)
        left = len(self.buffer) + self._unsent_events
        if left:
            metrics.inc("aitbc_usage_events_dropped_total", by=left)
            log.error("stopped with %d usage events unpublished", left)
