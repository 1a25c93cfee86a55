"""Auth checks answered from a bare nats-py queue subscription.

FastStream's consume path costs ~500 µs per message (context, middlewares, a task per message),
a hundred times what a check answered from the facts index costs; commands keep FastStream.
nats-py hands a subscription's messages to its callback one at a time, so the callback answers
what the index settles inline and gives a check that must ask the database to a task: at most
`max_lookups` at once, beyond which the subscription waits (the backpressure FastStream's
`max_workers` gave), so an unknown-hash flood cannot pile up unbounded work. nats-py subscribes
a plain subscription again by itself after a reconnect.

With tracing on, each check message is a span (`process aitbc.keys.check`), a child of the
edge's batch whose context the message's headers carry; it ends when the answer is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry.trace import Span

from aitbc_contracts.subjects import KEYS_CHECK, KEYS_QUEUE
from aitbc_keys.checks import KeyChecks, StoredCheck
from aitbc_keys.failures import FAILED, guard
from aitbc_runtime import tracing
from aitbc_runtime.bus import answerable
from aitbc_runtime.process import start_held

log = logging.getLogger(__name__)


class CheckResponder:
    def __init__(self, checks: KeyChecks, max_lookups: int = 64) -> None:
        self._checks = checks
        self._lookups = asyncio.Semaphore(max_lookups)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None

    async def start(self, nc: NATS) -> None:
        self._subscription = await nc.subscribe(KEYS_CHECK, queue=KEYS_QUEUE, cb=self._on_check)
        await nc.flush()  # the server knows the subscription before we say we are ready

    async def _on_check(self, msg: Msg) -> None:
        if not answerable(msg.reply, KEYS_CHECK):
            return
        span = tracing.serving(KEYS_CHECK, msg.headers) if tracing.enabled else None
        try:
            answer = self._checks.check_indexed(msg.data)
        except Exception:
            log.exception("unhandled error in a key check")
            answer = FAILED
        if isinstance(answer, bytes):
            await _respond(msg, answer, span)
            return
        await self._lookups.acquire()
        start_held(self._tasks, self._look_up(msg, answer, span))

    async def _look_up(self, msg: Msg, check: StoredCheck, span: Span | None) -> None:
        try:
            answer = await guard(self._checks.check_stored, check)
        finally:
            self._lookups.release()
        await _respond(msg, answer, span)

    async def stop(self) -> None:
        """Stop taking checks (another keys process takes them), answer those already taken."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):  # a closed or draining connection: nothing to do
                await subscription.drain()  # type: ignore[no-untyped-call]
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _respond(msg: Msg, answer: bytes, span: Span | None) -> None:
    try:
        await msg.respond(answer)
    except Exception as exc:  # no reply subject, or the connection closed under us
        log.debug("could not answer a key check: %s", exc)
    if span is not None:
        span.end()
