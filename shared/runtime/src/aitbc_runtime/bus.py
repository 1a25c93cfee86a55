"""NATS plumbing every process needs the same way: connecting, and following a stream from now."""

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
from nats.js.api import DeliverPolicy, KeyValueConfig
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

from aitbc_runtime.bus_access import BusAccess
from aitbc_runtime.process import cancel_and_wait

log = logging.getLogger("aitbc.bus")


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
    """An ordered JetStream consumer of `subjects` from now on, calling `on_message` per message.

    It keeps trying until the stream exists (its owner may start later). After a reconnect the
    server may have lost the consumer, and events may have passed unseen: it subscribes again
    from now and calls `on_reset`, so the caller can forget what those events could change.
    `deliver_policy` LAST starts each subscription with the stream's last message (a reader
    that needs an anchor); `stream` names the stream rather than having it looked up by subject.
    """

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
    ) -> None:
        self._nc = nc
        self._subjects = subjects
        self._on_message = on_message
        self._on_reset = on_reset
        self._name = name
        self._stream = stream
        self._deliver_policy = deliver_policy
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def _deliver(self, msg: Msg) -> None:
        self._on_message(msg)

    async def _run(self) -> None:
        js = self._nc.jetstream()
        while True:
            subscription = None
            try:
                seen = reconnects(self._nc)
                subscription = await js.subscribe(
                    self._subjects,
                    cb=self._deliver,
                    stream=self._stream,
                    ordered_consumer=True,
                    deliver_policy=self._deliver_policy,
                )
                self.ready.set()
                while reconnects(self._nc) == seen:  # noqa: ASYNC110 - nats-py has one callback slot
                    await asyncio.sleep(0.1)
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
            if subscription is not None:  # lost, not stopped: what was missed must be forgotten
                self._on_reset()

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


async def key_value(nc: NATS, config: KeyValueConfig) -> KeyValue:
    """The KV bucket of `config`: made on first use, its settings brought up to date after."""
    js = nc.jetstream()
    try:
        return await js.create_key_value(config)
    except BadRequestError:  # it exists with other settings (a TTL changed, say)
        stream = f"KV_{config.bucket}"
        info = await js.stream_info(stream)
        await js.update_stream(
            replace(info.config, max_age=config.ttl or 0, max_bytes=config.max_bytes or -1)
        )
        return await js.key_value(config.bucket)
