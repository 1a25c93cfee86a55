"""Shares that exactly one process holds at a time, by leases on a NATS KV bucket.

The usage service shares its 16 partitions this way, the keys service its outbox relay. In the
bucket, each process keeps `member.<id>` alive with a heartbeat, and each share `share.<name>`
names its owner. The revision of the write that took a share is its holder's *epoch*: the
bucket's revisions only grow, so a later holder always has a higher one, and whoever receives
its answers can ignore a deposed holder's (fencing).

Nothing here compares clocks across machines. A member is dead when this process has seen no
new heartbeat of it for `ttl` seconds of its own monotonic clock, confirmed by reading the
member's key before taking its shares (a stalled watch must not make a live owner look dead). A
holder trusts its shares only until `FENCE` x `ttl` after it *sent* its last acknowledged
heartbeat: whoever takes over saw that heartbeat later and waits `ttl` after it, so the old
holder has stopped before the new one starts, even if it was frozen in between.

Shares go where rendezvous hashing over the live members says (every member computes the same
place from the same members): a holder hands a share to its preferred member by stopping first
and then deleting the share's key, and the preferred member takes it at once. A share that its
preferred member leaves free for `ttl` is taken by anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
)
from nats.js.kv import KeyValue

from aitbc_contracts.ownership import LeaseMember, LeaseShare
from aitbc_runtime.bus import key_value
from aitbc_runtime.lease_view import LeaseView, Live, Seen, home
from aitbc_runtime.process import cancel_and_wait

log = logging.getLogger("aitbc.ownership")

FENCE = 0.75  # of the ttl after an acknowledged heartbeat that a holder trusts its shares
BEATS = 5  # heartbeats per ttl: a few may be lost or late before the holder fences itself
JOIN_TIMEOUT = 15.0  # seconds the first heartbeat is tried for (a bucket choosing its leader)
FORGET = 20  # ttls after which a silent member's key is removed from the bucket


_encode = msgspec.json.Encoder().encode

Gained = Callable[[str, int], Awaitable[None]]  # (share, epoch): start serving it
Lost = Callable[[str, bool], Awaitable[None]]  # (share, handed over): stop serving it


async def lease_bucket(nc: NATS, bucket: str, replicas: int) -> KeyValue:
    return await key_value(
        nc, KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE, replicas=replicas)
    )


class Ownership:
    def __init__(
        self,
        nc: NATS,
        bucket: str,
        names: Sequence[str],
        gained: Gained,
        lost: Lost,
        *,
        ttl: float,
        replicas: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nc = nc
        self.bucket_name = bucket
        self.names = tuple(names)
        self._offered = list(self.names)  # in its heartbeat: the others place only these here
        self.ttl = ttl
        self.replicas = replicas
        self.member = uuid.uuid4().hex[:16]
        self.held: dict[str, int] = {}  # share -> this holder's epoch
        self._gained, self._lost, self._clock = gained, lost, clock
        self.view = LeaseView(self.names)  # the bucket as this process has seen it
        self._heartbeat_revision = 0
        self._valid_until = 0.0
        self._started = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._kv: KeyValue | None = None

    def holds(self, name: str) -> bool:
        """Whether this process may serve the share now: it took it, nobody took it since as
        far as it knows, and its own lease is fresh. Cheap: on every request's path."""
        return name in self.held and self._clock() < self._valid_until

    async def start(self) -> None:
        """Joins: the first heartbeat, the bucket's state, then a first balancing pass."""
        self._kv = await lease_bucket(self.nc, self.bucket_name, self.replicas)
        watcher = await self._kv.watchall()
        self._started = self._clock()
        await self._first_beat()
        async for entry in watcher:  # what the bucket holds now, up to the end marker
            if entry is None:
                break
            self.view.note(entry, self._clock(), moved=False)
        self._tasks = [
            asyncio.create_task(self._watch(watcher), name="ownership-watch"),
            asyncio.create_task(self._heartbeats(), name="ownership-heartbeats"),
            asyncio.create_task(self._lapses(), name="ownership-lapses"),
            asyncio.create_task(self._balancing(), name="ownership-balance"),
        ]
        self.view.changed.set()  # the first pass at once

    async def stop(self) -> None:
        """Leaves: hands every share over (stopped first, then freed), then its member key."""
        await cancel_and_wait(self._tasks)
        for name in list(self.held):
            await self._release(name)
        if self._kv is not None and self._heartbeat_revision:
            with contextlib.suppress(Exception):
                await self._kv.delete(self._member_key(self.member), last=self._heartbeat_revision)

    @staticmethod
    def _member_key(member: str) -> str:
        return f"member.{member}"

    async def _watch(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is not None:
                self.view.note(entry, self._clock())

    async def _first_beat(self) -> None:
        """The first heartbeat, tried again while the bucket does not answer: one just made at
        3 replicas has no leader for a moment (`just cluster` starts its usage processes then),
        nor has one whose leader's node just died. A heartbeat whose answer was lost may have
        been stored: each try is a member of a new id (the old one is forgotten as silent)."""
        deadline = time.monotonic() + JOIN_TIMEOUT
        while True:
            try:
                await self._beat()
                return
            except (NoStreamResponseError, NatsTimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("first heartbeat not answered (%s): trying again", exc)
            self.member = uuid.uuid4().hex[:16]
            self._heartbeat_revision = 0
            await asyncio.sleep(0.2)

    async def _beat(self) -> None:
        assert self._kv is not None
        sent = self._clock()
        value = _encode(LeaseMember(socket.gethostname(), os.getpid(), self._offered))
        key = self._member_key(self.member)
        try:
            self._heartbeat_revision = await self._kv.update(
                key, value, last=self._heartbeat_revision
            )
        except KeyWrongLastSequenceError:  # removed as silent (it was frozen): join anew
            self._heartbeat_revision = await self._kv.create(key, value)
        self._valid_until = sent + FENCE * self.ttl

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / BEATS)
            try:
                await self._beat()
            except Exception as exc:  # the bus away: the shares lapse at _valid_until
                log.warning("ownership heartbeat failed: %s", exc)

    async def _lapses(self) -> None:
        """Stops serving every share the moment the lease lapses: apart from the heartbeats,
        whose request may hang while the bus is away."""
        while True:
            await asyncio.sleep(max(self._valid_until - self._clock(), 0) + 0.001)
            if self._clock() >= self._valid_until:
                if self.held:
                    log.warning("lease lapsed: stopped serving %s", ", ".join(sorted(self.held)))
                for name in list(self.held):
                    del self.held[name]
                    await self._lost(name, False)
                await asyncio.sleep(self.ttl / BEATS)

    async def _balancing(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.view.changed.wait(), self.ttl / BEATS)
            self.view.changed.clear()
            try:
                await self.balance()
            except Exception as exc:
                log.warning("balancing shares failed: %s", exc)

    def _live(self, now: float) -> Live:
        """The members shares are placed on, with what each may hold: heartbeats seen to
        move within a ttl."""
        live = [
            (m, s.shares)
            for m, s in self.view.members.items()
            if m != self.member and s.moved and now - s.at < self.ttl
        ]
        if now < self._valid_until:
            live.append((self.member, frozenset(self.names)))
        return live

    async def balance(self) -> None:
        """One pass: give up what was taken from it or belongs elsewhere, take what is free."""
        now = self._clock()
        live = self._live(now)
        await self._forget_silent(now)
        for name in self.names:
            seen = self.view.shares.get(name)
            if name in self.held:
                if seen is not None and seen.revision != self.held[name]:
                    del self.held[name]  # taken: deposed (a freeze outlived its lease)
                    await self._lost(name, False)
                elif home(name, live) not in (self.member, None):
                    await self._release(name)
            elif live and now < self._valid_until:
                since = await self._free_since(seen, now)
                if since is not None and (
                    home(name, live) == self.member or now - since >= self.ttl
                ):
                    await self._take(name, seen)

    async def _free_since(self, seen: Seen | None, now: float) -> float | None:
        """Since when the share has been free as far as this process can tell (None: it is
        held): never taken, freed, or held by a member whose heartbeat this process has not
        seen move for a ttl and whose key, read now, has not moved either."""
        if seen is None:
            return self._started
        if seen.owner is None or seen.owner == self.member:  # freed, or lapsed here
            return seen.at
        member = self.view.members.get(seen.owner)
        if member is not None and now - member.at < self.ttl:
            return None
        assert self._kv is not None
        try:
            entry = await self._kv.get(self._member_key(seen.owner))
        except (KeyNotFoundError, KeyDeletedError):
            return seen.at if member is None else member.at + self.ttl
        if member is None or entry.revision != member.revision:
            self.view.members[seen.owner] = Seen(entry.revision or 0, now)  # alive after all
            return None
        return member.at + self.ttl

    async def _take(self, name: str, seen: Seen | None) -> None:
        assert self._kv is not None
        try:
            epoch = await self._kv.update(
                f"share.{name}", _encode(LeaseShare(self.member)), last=seen.revision if seen else 0
            )
        except KeyWrongLastSequenceError:
            return  # another member was quicker: the watch will tell who
        self.view.shares[name] = Seen(epoch, self._clock(), self.member)
        self.held[name] = epoch
        log.info("took %s (epoch %d)", name, epoch)
        try:
            await self._gained(name, epoch)
        except Exception as exc:  # it cannot serve the share: someone else may
            log.warning("could not start serving %s (%s): handing it back", name, exc)
            await self._release(name)

    async def _release(self, name: str) -> None:
        """Stops serving the share first, then frees it for the member it belongs with."""
        epoch = self.held.pop(name)
        await self._lost(name, True)
        assert self._kv is not None
        with contextlib.suppress(Exception):  # taken meanwhile, or the bus away: it lapses
            await self._kv.delete(f"share.{name}", last=epoch)
        log.info("handed %s over", name)

    async def _forget_silent(self, now: float) -> None:
        """Removes the keys of members silent for FORGET ttls: processes come and go, and the
        bucket would otherwise keep every one that was killed. (By revision: one that beat
        meanwhile keeps its key.)"""
        assert self._kv is not None
        for member, seen in list(self.view.members.items()):
            if member != self.member and now - seen.at > FORGET * self.ttl:
                del self.view.members[member]
                with contextlib.suppress(Exception):
                    await self._kv.delete(self._member_key(member), last=seen.revision)
