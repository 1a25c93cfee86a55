"""Shares that exactly one process holds at a time, by leases on a NATS KV bucket.

The usage service shares its 16 partitions this way, the keys service its outbox relay. In the
bucket, each process keeps `member.<id>` alive with a heartbeat, and each share `share.<name>`
names its owner. The revision of the write that took a share is its holder's *epoch*: the
bucket's revisions only grow, so a later holder always has a higher one, and whoever receives
its answers can ignore a deposed holder's (fencing).

Nothing here compares clocks across machines. A member is dead when this process has seen no
new heartbeat of it for `ttl` seconds of its own monotonic clock, confirmed by reading the
member's key before taking its shares (a stalled watch must not make a live owner look dead).
A holder stops serving before anyone can take over (aitbc_runtime.heartbeat); a lapse is a
pause: once a heartbeat is answered again, each share whose key is still the holder's own is
served again, with the same epoch and counts, and the others are lost.

Shares go where rendezvous hashing over the live members says (every member computes the same
place from the same members): a holder hands a share to its preferred member by stopping first
and then deleting the share's key, and the preferred member takes it at once. A share that its
preferred member leaves free for `ttl` is taken by anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue

from aitbc_contracts.ownership import LeaseShare
from aitbc_runtime.bus import key_value
from aitbc_runtime.heartbeat import BEATS, FENCE, Heartbeat, member_key
from aitbc_runtime.lease_view import LeaseView, Live, Seen, home
from aitbc_runtime.process import cancel_and_wait

log = logging.getLogger("aitbc.ownership")

FORGET = 20  # ttls after which a silent member's key is removed from the bucket


_encode = msgspec.json.Encoder().encode

Gained = Callable[[str, int], Awaitable[None]]  # (share, epoch): start serving it
Lost = Callable[[str, bool], Awaitable[None]]  # (share, handed over): stop serving it


async def lease_bucket(
    nc: NATS, bucket: str, replicas: int, answer_within: float | None = None
) -> KeyValue:
    """The bucket (made while missing); with `answer_within`, a handle whose writes wait for their
    answer no longer than that: one lost answer must not hold up the heartbeats after it."""
    made = await key_value(
        nc, KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE, replicas=replicas)
    )
    if answer_within is None:
        return made
    return await nc.jetstream(timeout=answer_within).key_value(bucket)


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
        self.ttl = ttl
        self.replicas = replicas
        self.held: dict[str, int] = {}  # share -> this holder's epoch
        self._gained, self._lost, self._clock = gained, lost, clock
        self.view = LeaseView(self.names)  # the bucket as this process has seen it
        self.heartbeat = Heartbeat(self.names, ttl, clock)
        self._started = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._kv: KeyValue | None = None

    @property
    def member(self) -> str:
        return self.heartbeat.member

    def holds(self, name: str) -> bool:
        """Whether this process may serve the share now: it took it, nobody took it since as
        far as it knows, and its own lease is fresh. Cheap: on every request's path."""
        return name in self.held and self.heartbeat.fresh()

    async def start(self) -> None:
        """Joins: the first heartbeat, the bucket's state, then a first balancing pass."""
        self._kv = await lease_bucket(
            self.nc, self.bucket_name, self.replicas, answer_within=FENCE * self.ttl / 2
        )
        watcher = await self._kv.watchall()
        self._started = self._clock()
        await self.heartbeat.join(self._kv)
        async for entry in watcher:  # what the bucket holds now, up to the end marker
            if entry is None:
                break
            self.view.note(entry, self._clock(), moved=False)
        self._tasks = [
            asyncio.create_task(self._watch(watcher), name="ownership-watch"),
            asyncio.create_task(self.heartbeat.run(self._confirm), name="ownership-heartbeats"),
            asyncio.create_task(self.heartbeat.lapses(lambda: list(self.held)), name="lapses"),
            asyncio.create_task(self._balancing(), name="ownership-balance"),
        ]
        self.view.changed.set()  # the first pass at once

    async def stop(self) -> None:
        """Leaves: hands every share over (stopped first, then freed), then its member key.
        (Paused, it cannot know whether they are still its own: it only stops serving them.)"""
        await cancel_and_wait(self._tasks)
        for name in list(self.held):
            if self.heartbeat.paused:
                del self.held[name]
                await self._lost(name, False)
            else:
                await self._release(name)
        with contextlib.suppress(Exception):
            await self.heartbeat.leave()

    async def _watch(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is not None:
                self.view.note(entry, self._clock())

    async def _confirm(self) -> None:
        """After a lapse, a fresh heartbeat: each share is served again if its key is still
        the one this process wrote (nobody took it meanwhile), and lost otherwise."""
        assert self._kv is not None
        for name, epoch in list(self.held.items()):
            try:
                revision = (await self._kv.get(f"share.{name}")).revision
            except (KeyNotFoundError, KeyDeletedError):
                revision = None
            if revision != epoch:
                log.warning("%s was taken while the lease had lapsed", name)
                del self.held[name]
                await self._lost(name, False)
        if self.held:
            log.info("lease renewed: serving %s again", ", ".join(sorted(self.held)))

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
        if self.heartbeat.fresh():
            live.append((self.member, frozenset(self.names)))
        return live

    async def balance(self) -> None:
        """One pass: give up what was taken from it or belongs elsewhere, take what is free.
        None while paused: what it holds may be someone else's by now."""
        if self.heartbeat.paused:
            return
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
            elif live and self.heartbeat.fresh():
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
            entry = await self._kv.get(member_key(seen.owner))
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
                    await self._kv.delete(member_key(member), last=seen.revision)
