"""Adaptive request batching over the bus, shared by rate-limit decisions and key checks.

Items are grouped by lane (a usage partition, or one lane for key checks). What arrives in the
same turn of the event loop leaves together, at once, as long as fewer than `max_in_flight`
batches of that lane are out; beyond that, arrivals gather and leave when one returns (or at
`max_batch` items). A lone request is never delayed, a burst shares one message, and a request
that arrives while a batch is out does not wait a whole round trip behind it.

With tracing on, each batch is a span of its own, current while it is sent (so its message
carries the batch's context): one request's batch is that request's child, a larger one is
linked to every request's span (aitbc_runtime.tracing.batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from opentelemetry.trace import SpanContext

from aitbc_gate import metrics
from aitbc_runtime import tracing
from aitbc_runtime.process import start_held

Item = TypeVar("Item")
Result = TypeVar("Result")

Send = Callable[[int, list[Item]], Awaitable[Sequence[Result]]]
# An item waiting: with the future its caller awaits, and its caller's span (tracing on).
Waiting = tuple[Item, asyncio.Future[Result], SpanContext | None]


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        send: Send[Item, Result],
        lanes: int,
        failure: Callable[[Exception], Exception],
        *,
        name: str,
        max_batch: int = 1000,
        max_in_flight: int = 4,
    ) -> None:
        self._send = send
        self.name = name
        self._failure = failure  # what every caller of a failed batch gets raised
        self._batches = metrics.BATCHES.labels(name)
        self._sizes = metrics.BATCH_SIZE.labels(name)
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._waiting: list[list[Waiting[Item, Result]]] = [[] for _ in range(lanes)]
        self._in_flight = [0] * lanes
        self._scheduled = [False] * lanes
        self._trips: set[asyncio.Task[None]] = set()  # round trips under way

    async def submit(self, lane: int, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting[lane].append((item, future, tracing.current() if tracing.enabled else None))
        if not self._scheduled[lane] and self._in_flight[lane] < self.max_in_flight:
            self._scheduled[lane] = True
            loop.call_soon(self._flush, lane)  # after the others of this turn have joined
        return await future

    def _flush(self, lane: int) -> None:
        self._scheduled[lane] = False
        waiting = self._waiting[lane]
        if not waiting or self._in_flight[lane] >= self.max_in_flight:
            return
        batch, self._waiting[lane] = waiting[: self.max_batch], waiting[self.max_batch :]
        self._in_flight[lane] += 1
        start_held(self._trips, self._round_trip(lane, batch))

    async def _round_trip(self, lane: int, batch: list[Waiting[Item, Result]]) -> None:
        try:
            self._batches.inc()
            self._sizes.observe(len(batch))
            items = [item for item, _, _ in batch]
            if tracing.enabled:
                callers = [caller for _, _, caller in batch if caller is not None]
                with tracing.active(tracing.batch(self.name, callers)):
                    results = await self._send(lane, items)
            else:
                results = await self._send(lane, items)
            if len(results) != len(batch):
                raise ValueError(f"{len(results)} answers to a batch of {len(batch)}")
            for (_, future, _), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except Exception as exc:  # timeout, no responders, disconnected, a malformed reply
            failure = self._failure(exc)
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(failure)
        finally:
            self._in_flight[lane] -= 1
            if self._waiting[lane]:
                self._flush(lane)
