"""Usage events leave the edge off the response's critical path: buffered, batched, retried.

Each flush publishes one `UsageBatch` per partition, not one message per request: the stream,
nats-server and the aggregator pay per message. A batch, once formed, is retried as it is
(same bytes, same `Nats-Msg-Id`), so the stream's de-duplication stores it once however
often the ack was lost; and no newer batch goes out before it, so a partition keeps its order.
The buffer is bounded; what does not fit is counted as dropped, never silently lost. While
NATS or the usage stream is away, events wait and go out when it is back.

A request is buffered as it was served (`Served`), and its event is made at the flush: in one
loop over a batch, that work costs a fraction of what it costs on each response's way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from nats.aio.client import Client as NATS

from aitbc_contracts.subjects import MSG_ID_HEADER, partition_of, usage_batch_subject
from aitbc_contracts.usage import Outcome, UsageBatch, UsageEvent
from aitbc_gate import metrics
from aitbc_gate.ids import new_id
from aitbc_gate.settings import DEFAULT_ROUTE_WORDS
from aitbc_gate.usage_spool import Formed, Spool
from aitbc_runtime.process import cancel_and_wait

log = logging.getLogger("aitbc.api.usage_events")
_encode = msgspec.json.Encoder().encode
MAX_BATCH_BYTES = 512 * 1024  # well inside NATS's default max_payload (1 MB), with headers
ROUTE_DEPTH = 4  # segments under /v1 a route name keeps; a deeper path is OTHER_ROUTE
OTHER_ROUTE = "/v1/{other}"


class RouteTemplates:
    """A forwarded request's route name, for usage events: bounded whatever clients send.

    The forwarder's catch-all route says nothing of the Coordinator's routes, and the path is
    the client's: named after it, every id (or made-up word) would be a route name of its own
    in analytics. So a segment keeps its name only when it is one of the configured `words`
    (exactly); any other is `{id}` (an empty one stays empty), and a path deeper than
    ROUTE_DEPTH segments is OTHER_ROUTE. With W words there are at most
    sum((W + 2) ** d for d in 1..ROUTE_DEPTH) + 1 names, whatever the paths. Each path's
    name is remembered: most traffic repeats its paths."""

    KEPT = 4096

    def __init__(self, words: tuple[str, ...] = DEFAULT_ROUTE_WORDS) -> None:
        self.words = frozenset(words)
        self._known: dict[str, str] = {}

    def of(self, template: str, path: str) -> str:
        """The matched route's template; for the forwarder's catch-all, which says nothing,
        the path's route name: /v1/jobs/{id}."""
        if template and "{path" not in template:
            return template
        known = self._known.get(path, "")
        if not known:
            known = self._name(path)
            if len(self._known) >= self.KEPT:
                self._known.clear()  # ids make paths unbounded; start over rather than grow
            self._known[path] = known
        return known

    def _name(self, path: str) -> str:
        segments = path.removeprefix("/v1/").split("/")
        if not path.startswith("/v1/") or len(segments) > ROUTE_DEPTH:
            return OTHER_ROUTE
        words = self.words
        return "/v1/" + "/".join(s if s in words or not s else "{id}" for s in segments)


class Served(msgspec.Struct, tag="s", gc=False):
    """A request as it was served, recorded on its way out; `event()` makes its usage event.
    Tagged: the spool's journal holds it among its other records."""

    request_id: str
    account_id: str
    key_id: str
    method: str
    template: str  # the matched route's, as the ASGI scope has it ("" for none)
    path: str
    status: int
    latency_ms: float
    decision: Outcome
    at: float  # time.time()
    seq: int = 0  # its number in the spool's journal (0: no spool)

    def event(self, templates: RouteTemplates) -> UsageEvent:
        return UsageEvent(
            event_id=new_id(),
            request_id=self.request_id,
            account_id=self.account_id,
            key_id=self.key_id,
            method=self.method,
            route=templates.of(self.template, self.path),
            status=self.status,
            latency_ms=round(self.latency_ms, 3),
            decision=self.decision,
            at=datetime.fromtimestamp(self.at, UTC),
        )


class UsagePublisher:
    """`batch`: events a flush takes at most; `linger`: how long a flush waits for more."""

    def __init__(
        self,
        nc: NATS,
        capacity: int,
        batch: int = 500,
        linger: float = 0.1,
        route_words: tuple[str, ...] = DEFAULT_ROUTE_WORDS,
        spool: Path | None = None,
    ) -> None:
        self.nc = nc
        self.capacity = capacity
        self.batch = batch
        self.linger = linger
        self.buffer: deque[Served] = deque()
        self.templates = RouteTemplates(route_words)
        self.unsent: list[Formed] = []  # formed but not yet stored: retried exactly as they are
        self._unsent_events = 0
        self.spool = None if spool is None else Spool(spool, self._lowest)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def emit(self, served: Served) -> None:
        if len(self.buffer) + self._unsent_events >= self.capacity:
            metrics.USAGE_EVENTS_DROPPED.inc()
            log.error("usage buffer full (%d): event dropped", self.capacity)
            return
        if self.spool is not None:
            # On disk goes the route's name, never the client's path (which may hold anything,
            # a key pasted into it included): the event is made from the name alone.
            served.template, served.path = self.templates.of(served.template, served.path), ""
            self.spool.served(served)
        if not self.buffer:  # the publisher waits for an event only with none buffered
            self._wake.set()
        self.buffer.append(served)

    def start(self) -> None:
        if self.spool is not None:
            left, unsent = self.spool.recover(Served)
            if left or unsent:
                log.info("usage spool: %d requests and %d batches to send", len(left), len(unsent))
            self.buffer.extendleft(reversed(left))
            self._keep(unsent + self.unsent)
        self._task = asyncio.create_task(self._run(), name="usage-publisher")

    def _lowest(self) -> int:
        """The spool's mark: the lowest request number not yet stored (once a second)."""
        assert self.spool is not None
        numbers = [served.seq for served in self.buffer]
        numbers += [min(batch.seqs) for batch in self.unsent if batch.seqs]
        return min(numbers, default=self.spool.next_seq)

    def _keep(self, batches: list[Formed]) -> None:
        self.unsent = batches
        self._unsent_events = sum(len(batch.seqs) for batch in batches)

    def _form(self) -> list[Formed]:
        """Up to `batch` buffered events as one batch per partition, in order. A batch that
        would be too large to publish keeps its first half; the rest goes back to the front."""
        groups: dict[int, list[Served]] = {}
        partitions: dict[str, int] = {}  # a hash per account in the flush, not per event
        for _ in range(min(self.batch, len(self.buffer))):
            served = self.buffer.popleft()
            partition = partitions.get(served.account_id)
            if partition is None:
                partition = partitions[served.account_id] = partition_of(served.account_id)
            groups.setdefault(partition, []).append(served)
        batches: list[Formed] = []
        later: list[Served] = []
        for partition, group in groups.items():
            events = [served.event(self.templates) for served in group]
            payload = _encode(UsageBatch(events=events))
            while len(payload) > MAX_BATCH_BYTES and len(events) > 1:
                events = events[: len(events) // 2]
                payload = _encode(UsageBatch(events=events))
            later.extend(group[len(events) :])  # made again at a later flush
            if len(payload) > MAX_BATCH_BYTES:  # one event alone: it could never be stored
                metrics.USAGE_EVENTS_DROPPED.inc()
                log.error("usage event of %d bytes dropped: too large to publish", len(payload))
                continue
            seqs = [served.seq for served in group[: len(events)]]
            batches.append(Formed(uuid.uuid4().hex, usage_batch_subject(partition), payload, seqs))
            if self.spool is not None:
                self.spool.formed(batches[-1])
        self.buffer.extendleft(reversed(later))
        return batches

    async def _publish(self, batches: list[Formed]) -> list[Formed]:
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
                continue
            metrics.USAGE_BATCHES.inc()
            metrics.USAGE_EVENTS_PUBLISHED.inc(len(batch.seqs))
            if self.spool is not None:
                self.spool.stored(batch.msg_id)
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
            await cancel_and_wait([self._task])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_seconds):
                while self.buffer or self.unsent:
                    if not await self._flush():
                        await asyncio.sleep(0.1)
        left = len(self.buffer) + self._unsent_events
        if self.spool is not None:
            self.spool.close()
            if left:
                log.warning("stopped with %d usage events in the spool, for the next start", left)
        elif left:
            metrics.USAGE_EVENTS_DROPPED.inc(left)
            log.error("stopped with %d usage events unpublished", left)
