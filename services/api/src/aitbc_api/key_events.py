"""Keeps the auth cache true: follows the key event stream and evicts what each event changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from aitbc_contracts.subjects import KEY_EVENTS_SUBJECTS

from aitbc_api.auth import AuthCache

log = logging.getLogger("aitbc.api.key_events")


class _Touched(msgspec.Struct):
    """The only fields of any key event the cache needs (msgspec skips the rest)."""

    type: str
    account_id: str
    key_id: str | None = None


_decode = msgspec.json.Decoder(_Touched).decode


def apply(cache: AuthCache, data: bytes) -> None:
    try:
        event = _decode(data)
    except msgspec.DecodeError:
        log.warning("ignored an undecodable key event")
        return
    if event.key_id is not None:
        cache.evict_key(event.key_id)
    elif event.type.startswith("account.plan_changed"):
        cache.evict_account(event.account_id)


class KeyEventFollower:
    """An ordered JetStream consumer from 'now on'; it resubscribes until the stream exists."""

    def __init__(self, nc: NATS, cache: AuthCache) -> None:
        self._nc = nc
        self._cache = cache
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="key-event-follower")

    async def _on_message(self, msg: Msg) -> None:
        apply(self._cache, msg.data)

    async def _run(self) -> None:
        js = self._nc.jetstream()
        while True:
            try:
                await js.subscribe(
                    KEY_EVENTS_SUBJECTS,
                    cb=self._on_message,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.NEW,
                )
                self.ready.set()
                return
            except Exception as exc:  # stream not created yet, or NATS away: try again
                log.info("waiting for the key event stream: %s", exc)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
