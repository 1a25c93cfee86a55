"""Usage events leave the edge off the response's critical path: buffered, batched, retried.

The buffer is bounded; what does not fit is counted as dropped, never silently lost. While
NATS or the usage stream is away, events wait and go out when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

import msgspec
from nats.aio.client import Client as NATS

from aitbc_api import metrics
from aitbc_contracts.subjects import MSG_ID_HEADER, usage_event_subject
from aitbc_contracts.usage import UsageEvent

log = logging.getLogger("aitbc.api.usage_events")
_encode = msgspec.json.Encoder().encode


class UsagePublisher:
    def __init__(self, nc: NATS, capacity: int, batch: int = 500) -> None:
        self.nc = nc
        self.capacity = capacity
        self.batch = batch
        self.buffer: deque[UsageEvent] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def emit(self, event: UsageEvent) -> None:
        if len(self.buffer) >= self.capacity:
            metrics.inc("aitbc_usage_events_dropped_total")
            log.error("usage buffer full (%d): event dropped", self.capacity)
            return
        self.buffer.append(event)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-publisher")

    async def _publish(self, events: list[UsageEvent]) -> list[UsageEvent]:
        """Publishes concurrently; returns the events that were not stored."""
        js = self.nc.jetstream()
        results = await asyncio.gather(
            *(
                js.publish(
                    usage_event_subject(event.account_id),
                    _encode(event),
                    headers={MSG_ID_HEADER: event.event_id},  # a retry is stored once
                )
                for event in events
            ),
            return_exceptions=True,
        )
        failed = [
            event
            for event, result in zip(events, results, strict=True)
            if isinstance(result, BaseException)
        ]
        metrics.inc("aitbc_usage_events_published_total", by=len(events) - len(failed))
        return failed

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self.buffer:
                self._wake.clear()
                await self._wake.wait()
            events = [self.buffer.popleft() for _ in range(min(self.batch, len(self.buffer)))]
            failed = await self._publish(events)
            if failed:
                self.buffer.extendleft(reversed(failed))  # first in line again, order kept
                log.warning("usage stream unavailable; %d events waiting", len(self.buffer))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            else:
                backoff = 0.1

    async def stop(self, flush_seconds: float = 5.0) -> None:
        """Stop, publishing what is still buffered (for up to `flush_seconds`)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_seconds):
                while self.buffer:
                    events = [
                        self.buffer.popleft() for _ in range(min(self.batch, len(self.buffer)))
                    ]
                    failed = await self._publish(events)
                    if failed:
                        self.buffer.extendleft(reversed(failed))
                        break
        if self.buffer:
            metrics.inc("aitbc_usage_events_dropped_total", by=len(self.buffer))
            log.error("stopped with %d usage events unpublished", len(self.buffer))
