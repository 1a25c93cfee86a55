"""A process's membership of a lease bucket (aitbc_runtime.ownership): its `member.<id>` key,
rewritten BEATS times a ttl, and until when its leases may be trusted.

A holder trusts its shares only until FENCE x ttl after it *sent* its last acknowledged
heartbeat: whoever takes over saw that heartbeat later and waits a ttl after it, so the holder
has stopped before the next one starts, even if it was frozen in between. A lapse pauses the
shares; the next acknowledged heartbeat has them confirmed (aitbc_runtime.ownership).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import (
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
)
from nats.js.kv import KeyValue

from aitbc_contracts.ownership import LeaseMember

log = logging.getLogger("aitbc.ownership")

FENCE = 0.75  # of the ttl after an acknowledged heartbeat that a holder trusts its shares
BEATS = 5  # heartbeats per ttl: a few may be lost or late before the holder pauses
JOIN_TIMEOUT = 15.0  # seconds the first heartbeat is tried for (a bucket choosing its leader)

_encode = msgspec.json.Encoder().encode


def member_key(member: str) -> str:
    return f"member.{member}"


class Heartbeat:
    def __init__(
        self, names: Sequence[str], ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.offered = list(names)  # in each heartbeat: the others place only these here
        self.ttl = ttl
        self.clock = clock
        self.member = uuid.uuid4().hex[:16]
        self.revision = 0  # of its key's last write
        self.valid_until = 0.0
        self.paused = False  # lapsed, and not confirmed since
        self.kv: KeyValue | None = None

    def fresh(self) -> bool:
        return self.clock() < self.valid_until and not self.paused

    async def join(self, kv: KeyValue) -> None:
        """The first heartbeat, tried again while the bucket does not answer: one just made at
        3 replicas has no leader for a moment (`just cluster` starts its usage processes then),
        nor has one whose leader's node just died. A heartbeat whose answer was lost may have
        been stored: each try is a member of a new id (the old one is forgotten as silent)."""
        self.kv = kv
        deadline = time.monotonic() + JOIN_TIMEOUT
        while True:
            try:
                await self.beat()
                return
            except (NoStreamResponseError, NatsTimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("first heartbeat not answered (%s): trying again", exc)
            self.member = uuid.uuid4().hex[:16]
            self.revision = 0
            await asyncio.sleep(0.2)

    async def beat(self) -> None:
        assert self.kv is not None
        sent = self.clock()
        value = _encode(LeaseMember(socket.gethostname(), os.getpid(), self.offered))
        key = member_key(self.member)
        try:
            self.revision = await self.kv.update(key, value, last=self.revision)
        except KeyWrongLastSequenceError:  # a write whose answer was lost, or removed as silent
            try:
                current = (await self.kv.get(key)).revision
            except (KeyNotFoundError, KeyDeletedError):
                self.revision = await self.kv.create(key, value)
            else:  # its own key, which only it writes
                self.revision = await self.kv.update(key, value, last=current)
        self.valid_until = sent + FENCE * self.ttl

    async def run(self, renewed: Callable[[], Awaitable[None]]) -> None:
        """Beats for ever; after a lapse, `renewed` confirms the shares, then they are fresh."""
        while True:
            await asyncio.sleep(self.ttl / BEATS)
            try:
                await self.beat()
                if self.paused:
                    await renewed()
                    self.paused = False
            except Exception as exc:  # the bus away: the shares lapse at valid_until
                log.warning("ownership heartbeat failed: %s", exc)

    async def lapses(self, held: Callable[[], Sequence[str]]) -> None:
        """Pauses the moment the lease lapses (apart from the heartbeats, whose request may
        hang while the bus is away): a lapse is no loss yet. A late heartbeat, a frozen
        process, a bus away for a moment: whoever might take over waits a whole ttl."""
        while True:
            await asyncio.sleep(max(self.valid_until - self.clock(), 0) + 0.001)
            if self.clock() >= self.valid_until and not self.paused:
                self.paused = True
                if shares := held():
                    log.warning("lease lapsed: not serving %s", ", ".join(sorted(shares)))

    async def leave(self) -> None:
        if self.kv is not None and self.revision:
            await self.kv.delete(member_key(self.member), last=self.revision)
