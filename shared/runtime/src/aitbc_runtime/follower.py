"""Following a JetStream stream with an ordered consumer, through reconnects: from now, or
from a stream's last message, and (`resume`) on from where it was after an outage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from aitbc_runtime.bus import ORDERED_HEARTBEAT, reconnects
from aitbc_runtime.process import cancel_and_wait

log = logging.getLogger("aitbc.bus")


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

    A mirror can stop while the connection stays: when its source's leader is lost, the mirror
    holds nothing new, silently, until nats-server sets it up again (about 10 s later with the
    durable consumers of aitbc_infra.bus_mirrors, some 45 s with an ephemeral one). So a
    resuming follower of a mirror looks at it every WATCH_EVERY: one that has not heard from
    its source for SILENT is lost too (`on_lost`), and found once it follows again and what it
    holds has been delivered.

    Only the deliveries of its stream's consumers are given to `on_message`. The others of its
    role may make the server publish on its deliver subject (every process of a role shares
    its inboxes): their own JetStream API answers and messages, or deliveries of a consumer
    they made on a stream of their own, bytes and headers as they wrote them, which the
    client library takes for its consumer's when their delivery count matches. Such a message
    goes to `on_foreign` instead; the client then keeps wrong counts, so a delivery one is
    followed by a subscription made again, from after the last message of the stream given.
    """

    LOOK_EVERY = 0.1  # seconds between looks at the connection
    WATCH_EVERY = 1.0  # seconds between looks at a mirror's source
    # A following mirror hears from its source about once a second (heartbeats, if no message)
    SILENT = 5.0

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
        on_foreign: Callable[[Msg], None] = lambda _: None,
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
        self._on_foreign = on_foreign
        self._misled = False  # given another's delivery: subscribe again, from `_next`
        self._next: int | None = None  # the stream sequence after the last one delivered
        self._seen = 0  # the connection's reconnections when the subscription was made
        self._lost = False
        self._catching_up = False  # resumed after a loss, not yet given all it missed
        self._missed = False  # the stream held more than it had been given when it resumed
        self._stalled = False  # a mirror that stopped following its source (SILENT)
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def _deliver(self, msg: Msg) -> None:
        if reconnects(self._nc) != self._seen or self._misled:
            # From a subscription made before a reconnect (or misled): what it delivers now
            # may skip what the stream lost meanwhile. The next one takes it up, checked.
            return
        try:
            metadata = msg.metadata  # from its reply subject, which the server alone sets
        except Exception:
            metadata = None
        if metadata is None or (self._stream is not None and metadata.stream != self._stream):
            self._on_foreign(msg)
            self._misled = bool(msg.reply)  # a delivery: the client counted it as its own
            return
        self._on_message(msg)
        self._next = metadata.sequence.stream + 1
        if self._resume and self._catching_up and metadata.num_pending == 0:
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
                await self._until_reconnected(js)
                if self._misled:
                    resume_at = await self._subscribe_again(subscription)
                    subscription = None  # given up already
                    continue
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

    async def _subscribe_again(self, subscription: JetStreamContext.PushSubscription) -> int | None:
        """After another's delivery: a new subscription, from after the last message of the
        stream given (with none given yet, as at the start, the caller's views reset)."""
        log.warning(
            "%s: a message that is no delivery of %s came on its subscription; subscribing "
            "again", self._name, self._stream or self._subjects,
        )  # fmt: skip
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
        self._misled = False
        if self._next is None:
            self._on_reset()
        return self._next

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
            idle_heartbeat=ORDERED_HEARTBEAT,
            deliver_policy=policy,
            config=config,
        )
        if self._catching_up and not self._missed:
            self._found()  # nothing passed while it was away
        return subscription

    async def _until_reconnected(self, js: JetStreamContext) -> None:
        # Polled: nats-py has one slot per connection for each callback, the process's own.
        watched = time.monotonic()
        while reconnects(self._nc) == self._seen and not self._misled:
            if not self._nc.is_connected:
                self._lose()
            elif self._resume and time.monotonic() - watched >= self.WATCH_EVERY:
                watched = time.monotonic()
                await self._watch_source(js)
            await asyncio.sleep(self.LOOK_EVERY)
        if self._misled:
            return  # still connected: nothing lost
        self._stalled = False  # the resumption after the reconnect says what was missed
        self._lose()  # back already, but it was away

    async def _watch_source(self, js: JetStreamContext) -> None:
        """Lost while the stream, a mirror, does not follow its source; found once it does,
        caught up (no lag), and what it holds has been delivered."""
        assert self._stream is not None
        try:
            async with asyncio.timeout(self.WATCH_EVERY):  # the caller looks at the connection
                info = await js.stream_info(self._stream)
        except Exception:  # a stream with no leader for now, a connection away: not known
            return
        mirror = info.mirror
        if mirror is None:
            return
        heard = mirror.active is not None and 0 <= mirror.active < self.SILENT * 1e9
        if heard and not self._stalled:
            return
        if not heard:
            if not self._stalled:
                log.warning(
                    "%s: %s has not heard from its source for %.0f s or more: lost until it "
                    "follows it again", self._name, self._stream, self.SILENT,
                )  # fmt: skip
                self._stalled = True
                self._lose()
            return
        if mirror.lag:
            return  # following again, not caught up yet
        log.info("%s: %s follows its source again", self._name, self._stream)
        self._stalled = False
        following = self._next if self._next is not None else 1
        self._catching_up, self._missed = True, info.state.last_seq >= following
        if not self._missed:
            self._found()

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
