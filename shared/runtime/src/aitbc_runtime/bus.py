"""NATS plumbing every process needs the same way: connecting, and following a stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy, KeyValueConfig, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

from aitbc_runtime.bus_access import INBOX_ROOT, BusAccess
from aitbc_runtime.process import cancel_and_wait

log = logging.getLogger("aitbc.bus")

INBOX = INBOX_ROOT + "."


class RefusedReplies:
    """Requests left unanswered because their reply subject was not an inbox: counted, and
    logged once per request subject and reply subject's first two tokens (a flood of them
    says so once, and a sender cannot grow this without bound)."""

    MAX_KINDS = 1024

    def __init__(self) -> None:
        self.count = 0
        self._seen: set[tuple[str, str]] = set()

    def add(self, subject: str, reply: str) -> None:
        self.count += 1
        kind = (subject, ".".join(reply.split(".", 2)[:2]))
        if kind in self._seen or len(self._seen) >= self.MAX_KINDS:
            return
        self._seen.add(kind)
        log.warning(
            "left a request on %s unanswered: its reply subject %.80s is not an inbox (an "
            "answer there could land anywhere, even in a stream); more like it are only counted",
            subject, reply,
        )  # fmt: skip


refused_replies = RefusedReplies()


def answerable(reply: str | None, subject: str = "") -> bool:
    """Whether a responder may answer a request with this reply subject: only an inbox.

    The server lets a responder (allow_responses) publish to whatever reply subject the
    requester named, past every deny: a stream's subject, or the JetStream API. So every
    responder asks this first, and drops a request it refuses (counted in `refused_replies`,
    logged once per kind). A message with no reply subject was published, not requested:
    it is not refused here, and nothing is sent back. A prefix check: free on the hot path."""
    if not reply or reply.startswith(INBOX):
        return True
    refused_replies.add(subject, reply)
    return False


def logged_callbacks(
    name: str, on_reconnect: Callable[[], Awaitable[None]] | None = None
) -> dict[str, Any]:
    """A connection's callbacks, as nats.connect takes them: the log says when it is lost and
    when it is back; its errors are for debugging (each reconnect attempt raises one).

    A disconnection is INFO: every clean stop closes the connection too, and nats-py says so
    through the same callback. A loss shows as the WARNING of the reconnection that ends it
    (and, while it lasts, in what the process could not do)."""

    async def reconnected() -> None:
        log.warning("%s reconnected to NATS after losing it", name)
        if on_reconnect is not None:
            await on_reconnect()

    async def disconnected() -> None:
        log.info("%s disconnected from NATS", name)

    async def error(exc: Exception) -> None:
        log.debug("%s NATS error: %s", name, exc)

    return {"reconnected_cb": reconnected, "disconnected_cb": disconnected, "error_cb": error}


# A partition that drops packets without closing anything is seen only by unanswered pings:
# nats-py's default (one every two minutes, two unanswered) would keep an edge trusting its
# cached keys for minutes. One every 5 s, the third unanswered: noticed within 15-20 s.
PING_EVERY = 5
PINGS_UNANSWERED = 2


async def connect(
    access: BusAccess,
    name: str,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    wait: float = 60.0,
) -> NATS:
    """Connect as `access` says, waiting up to `wait` seconds for the server; then reconnect
    forever. Refused credentials are not waited for: they will not get better."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            return await nats.connect(
                **access.options(),
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                ping_interval=PING_EVERY,
                max_outstanding_pings=PINGS_UNANSWERED,
                **logged_callbacks(name, on_reconnect),
            )
        except Exception as exc:
            if loop.time() > deadline or "Authorization Violation" in str(exc):
                raise
            log.warning("%s waiting for NATS at %s", name, access.where())
            await asyncio.sleep(0.5)


def reconnects(nc: NATS) -> int:
    """How many times this connection has reconnected: a change means consumers may be gone."""
    return int(nc.stats["reconnects"])


class Follower:
    """An ordered JetStream consumer of `subjects` (in `stream`, if named) from now on, calling
    `on_message` per message.

    It keeps trying until the stream exists (its owner may start later). After a reconnect the
    server may have lost the consumer, and messages may have passed unseen: it subscribes again
    from now and calls `on_reset`, so the caller can forget what those messages could change.
    `deliver_policy` LAST starts each subscription with the stream's last message (a reader
    that needs an anchor); `stream` names the stream rather than having it looked up by subject.

    With `resume` (and `stream` named), a reconnect is no reset while the stream still holds
    the message after the last one delivered: the follower goes on from there, so what passed
    while it was away is delivered, in order. It tells `on_lost` when it finds its connection
    gone (or back already: a reconnect between two looks), and `on_found` once it has resumed
    and been delivered everything the stream held then; when it cannot resume (nothing
    delivered yet, the stream purged past that message or rebuilt shorter), `on_reset` instead.
    """

    LOOK_EVERY = 0.1  # seconds between looks at the connection

    def __init__(
        self,
        nc: NATS,
        subjects: str,
        on_message: Callable[[Msg], None],
        name: str,
        on_reset: Callable[[], None] = lambda: None,
        *,
        stream: str | None = None,
        deliver_policy: DeliverPolicy = DeliverPolicy.NEW,
        resume: bool = False,
        on_lost: Callable[[], None] = lambda: None,
        on_found: Callable[[], None] = lambda: None,
    ) -> None:
        if resume and stream is None:
            raise ValueError("a follower resumes a stream it names")
        self._nc = nc
        self._subjects = subjects
        self._stream = stream  # None: the stream holding `subjects` (a mirror holds none)
        self._on_message = on_message
        self._on_reset = on_reset
        self._name = name
        self._deliver_policy = deliver_policy
        self._resume = resume
        self._on_lost = on_lost
        self._on_found = on_found
        self._next: int | None = None  # the stream sequence after the last one delivered
        self._seen = 0  # the connection's reconnections when the subscription was made
        self._lost = False
        self._catching_up = False  # resumed after a loss, not yet given all it missed
        self._missed = False  # the stream held more than it had been given when it resumed
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def _deliver(self, msg: Msg) -> None:
        if reconnects(self._nc) != self._seen:
            # From a subscription made before a reconnect: what it delivers now may skip
            # what the stream lost meanwhile. The next subscription takes it up, checked.
            return
        self._on_message(msg)
        if not self._resume:
            return
        try:
            metadata = msg.metadata
        except Exception:  # not a JetStream delivery: nothing to resume from
            return
        self._next = metadata.sequence.stream + 1
        if self._catching_up and metadata.num_pending == 0:
            self._found()

    async def _run(self) -> None:
        js = self._nc.jetstream()
        resume_at: int | None = None  # None: from `deliver_policy`
        while True:
            subscription = None
            try:
                self._seen = reconnects(self._nc)
                subscription = await self._subscribe(js, resume_at)
                self.ready.set()
                await self._until_reconnected()
                log.info("%s: reconnected; following %s again", self._name, self._subjects)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("%s waiting for %s: %s", self._name, self._subjects, exc)
                await asyncio.sleep(0.5)
            finally:
                if subscription is not None:
                    with contextlib.suppress(Exception):
                        await subscription.unsubscribe()
            if subscription is not None:  # lost, not stopped
                resume_at = await self._resume_point(js)
                if resume_at is None:  # what was missed must be forgotten
                    self._lost = self._catching_up = False
                    self._on_reset()

    async def _subscribe(
        self, js: JetStreamContext, resume_at: int | None
    ) -> JetStreamContext.PushSubscription:
        if resume_at is None:
            policy, config = self._deliver_policy, None
        else:
            policy = DeliverPolicy.BY_START_SEQUENCE
            config = ConsumerConfig(opt_start_seq=resume_at)
        subscription = await js.subscribe(
            self._subjects,
            stream=self._stream,
            cb=self._deliver,
            ordered_consumer=True,
            deliver_policy=policy,
            config=config,
        )
        if self._catching_up and not self._missed:
            self._found()  # nothing passed while it was away
        return subscription

    async def _until_reconnected(self) -> None:
        # Polled: nats-py has one slot per connection for each callback, the process's own.
        while reconnects(self._nc) == self._seen:
            if not self._nc.is_connected:
                self._lose()
            await asyncio.sleep(self.LOOK_EVERY)
        self._lose()  # back already, but it was away

    async def _resume_point(self, js: JetStreamContext) -> int | None:
        """The stream sequence to go on from after a reconnect, or None to start over."""
        if not self._resume or self._next is None:
            return None
        assert self._stream is not None
        try:
            state = (await js.stream_info(self._stream)).state
        except Exception as exc:
            log.warning("%s cannot tell where to resume (%s): starting over", self._name, exc)
            return None
        if not state.first_seq <= self._next <= state.last_seq + 1:
            log.warning(
                "%s: the stream no longer holds sequence %d (it holds %d..%d): messages may "
                "have passed unseen; starting over",
                self._name, self._next, state.first_seq, state.last_seq,
            )  # fmt: skip
            return None
        self._catching_up, self._missed = True, state.last_seq >= self._next
        return self._next

    def _lose(self) -> None:
        if self._resume and not self._lost:
            self._lost = True
            self._on_lost()

    def _found(self) -> None:
        self._lost = self._catching_up = False
        self._on_found()

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])


async def until_answered(nc: NATS, subject: str, payload: bytes, within: float = 10.0) -> None:
    """Waits until `subject` has a responder that answers: a service is ready only then.

    A just-made subscription can take a moment to be seen by the server that routes the
    request, so a service asks itself before it says it is ready.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await nc.request(subject, payload, timeout=1.0)
            return
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.02)


SETTINGS_TIMEOUT = 2.0  # a refused update is never answered: how long to wait for one


async def update_or_keep(nc: NATS, config: StreamConfig) -> None:
    """Bring an existing stream's settings up to `config`. Only an admin may change a stream
    (aitbc_infra.bus_roles), so a service whose settings changed says so and carries on with
    the stream as it is, until an admin updates it."""
    try:
        await nc.jetstream(timeout=SETTINGS_TIMEOUT).update_stream(config)
    except Exception as exc:  # refused (no answer: a timeout), or a change JetStream rejects
        log.warning(
            "stream %s has other settings than this version's and they could not be changed "
            "(%s; an admin may change them): using it as it is",
            config.name, type(exc).__name__,
        )  # fmt: skip


async def key_value(nc: NATS, config: KeyValueConfig) -> KeyValue:
    """The KV bucket of `config`: made on first use, its settings brought up to date after
    where this role may (update_or_keep)."""
    js = nc.jetstream()
    try:
        return await js.create_key_value(config)
    except BadRequestError:  # it exists with other settings (a TTL changed, say)
        stream = f"KV_{config.bucket}"
        info = await js.stream_info(stream)
        wanted = replace(info.config, max_age=config.ttl or 0, max_bytes=config.max_bytes or -1)
        await update_or_keep(nc, wanted)
        return await js.key_value(config.bucket)
