"""Answers the decide and settle subjects of the partitions held (aitbc_usage.handlers decides)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry.trace import Span

from aitbc_contracts.messages import Code, Rejected
from aitbc_contracts.subjects import usage_decide_subject, usage_settle_subject
from aitbc_contracts.usage import PARTITION_MOVED
from aitbc_runtime import tracing
from aitbc_runtime.bus import answerable
from aitbc_runtime.process import start_held
from aitbc_usage.handlers import Deciding, encode

log = logging.getLogger("aitbc.usage")

_UNAVAILABLE = encode(Rejected(Code.SERVICE_UNAVAILABLE, "deciding failed; try again"))


_MOVED = encode(Rejected(PARTITION_MOVED, "the partition moved; ask again"))


class Answering:
    """Answers a partition's decide and settle subjects while it is held, with no queue group:
    a partition has exactly one holder, or its counts would split. Bare nats-py, not
    FastStream: FastStream's per-message consume path cost about as much as deciding a whole
    batch. One callback task per subscription: a partition's batches are decided in arrival
    order, never awaiting in between (a batch that needs plans looked up, or whose refusals
    wait for leases, answers from a task of its own, so it holds up no other). Every
    request gets an answer, a Rejected at worst, so the edge never waits for a timeout."""

    def __init__(self, nc: NATS, deciding: Deciding) -> None:
        self.nc = nc
        self.deciding = deciding
        self.later: set[asyncio.Task[None]] = set()  # answers waiting for leases to be settled

    async def subscribe(self, partition: int) -> list[Subscription]:
        return [
            await self.nc.subscribe(usage_settle_subject(partition), cb=self._settler(partition)),
            await self.nc.subscribe(usage_decide_subject(partition), cb=self._responder(partition)),
        ]

    async def _answer(
        self, msg: Msg, reply: bytes | Coroutine[None, None, bytes], span: Span | None
    ) -> None:
        try:
            if not isinstance(reply, bytes):
                with tracing.within(span):
                    reply = await reply
        except Exception:
            log.exception("deciding a batch failed")
            reply = _UNAVAILABLE
        try:
            await msg.respond(reply)
        except Exception as exc:  # no reply subject, or the connection is closing
            log.warning("could not answer a decision batch: %s", exc)
        if span is not None:
            span.end()

    def _responder(self, partition: int) -> Callable[[Msg], Awaitable[None]]:
        """With tracing on, a batch's span (`process aitbc.usage.decide.<p>`) is a child of
        the edge's batch span its headers carry; current while it is decided (a plan looked
        up from the keys service is its child), ended when the answer is sent."""

        async def respond(msg: Msg) -> None:
            if not answerable(msg.reply, msg.subject):
                return
            span = tracing.serving(msg.subject, msg.headers) if tracing.enabled else None
            if not self.deciding.serves(partition):  # lapsed, or handed over: not ours now
                await self._answer(msg, _MOVED, span)
                return
            try:
                with tracing.within(span):
                    reply = self.deciding.answer(msg.data, partition)
            except Exception:
                log.exception("deciding a batch failed")
                reply = _UNAVAILABLE
            if isinstance(reply, bytes):
                await self._answer(msg, reply, span)
                return
            start_held(self.later, self._answer(msg, reply, span))

        return respond

    def _settler(self, partition: int) -> Callable[[Msg], Awaitable[None]]:
        async def settle(msg: Msg) -> None:
            # Also while a lapsed lease pauses the partition: units given back only ever lower
            # this holder's own counts, which are served again if the lease resumes, and
            # dropped if it was taken. Dropped here, they would count as used for the minute.
            if partition in self.deciding.windows:
                self.deciding.settle(msg.data, partition)

        return settle


async def answer_decisions(
    nc: NATS, deciding: Deciding, partitions: tuple[int, ...]
) -> list[Subscription]:
    """Answers the partitions for good (no leases): for tests of deciding alone."""
    answering = Answering(nc, deciding)
    return [s for partition in partitions for s in await answering.subscribe(partition)]
