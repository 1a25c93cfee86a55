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
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

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
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from aitbc_contracts.ownership import LeaseMember, LeaseShare
from aitbc_runtime.bus import key_value
from aitbc_runtime.process import cancel_and_wait

log = logging.getLogger("aitbc.ownership")

FENCE = 0.75  # of the ttl after an acknowledged heartbeat that a holder trusts its shares
BEATS = 5  # heartbeats per ttl: a few may be lost or late before the holder fences itself
JOIN_TIMEOUT = 15.0  # seconds the first heartbeat is tried for (a bucket choosing its leader)
FORGET = 20  # ttls after which a silent member's key is removed from the bucket


_encode = msgspec.json.Encoder().encode
_share = msgspec.json.Decoder(LeaseShare).decode

Gained = Callable[[str, int], Awaitable[None]]  # (share, epoch): start serving it
Lost = Callable[[str, bool], Awaitable[None]]  # (share, handed over): stop serving it


@dataclass
class _Seen:
    revision: int
    at: float  # this process's monotonic clock when the revision was first seen
    owner: str | None = None  # a share's owner; None for a member, or a free share


def rendezvous(name: str, members: Sequence[str]) -> str:
    """The member a share belongs with: the same answer from the same members everywhere,
    and when one member goes, only its shares move."""
    return max(members, key=lambda m: hashlib.blake2b(f"{name}/{m}".encode()).digest())


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
        self.ttl = ttl
        self.replicas = replicas
        self.member = uuid.uuid4().hex[:16]
        self.held: dict[str, int] = {}  # share -> this holder's epoch
        self._gained, self._lost, self._clock = gained, lost, clock
        self._members: dict[str, _Seen] = {}
        self._shares: dict[str, _Seen] = {}
        self._heartbeat_revision = 0
        self._valid_until = 0.0
        self._started = 0.0
        self._wake = asyncio.Event()
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
            self._note(entry)
        self._tasks = [
            asyncio.create_task(self._watch(watcher), name="ownership-watch"),
            asyncio.create_task(self._heartbeats(), name="ownership-heartbeats"),
            asyncio.create_task(self._lapses(), name="ownership-lapses"),
            asyncio.create_task(self._balancing(), name="ownership-balance"),
        ]
        self._wake.set()  # the first pass at once

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

    def _note(self, entry: KeyValue.Entry) -> None:
        kind, _, name = entry.key.partition(".")
        gone = entry.operation in (KV_DEL, KV_PURGE) or not entry.value
        now = self._clock()
        revision = entry.revision or 0
        if kind == "member":
            known = self._members.get(name)
            if known is not None and known.revision >= revision:
                return  # nothing new, or the watch lags behind a read of the key
            if gone:
                self._members.pop(name, None)
            else:
                self._members[name] = _Seen(revision, now)
        elif kind == "share" and name in self.names:
            if (known := self._shares.get(name)) is not None and known.revision >= revision:
                return  # the watch lags behind what this process wrote itself
            owner = None
            if entry.value and not gone:
                try:
                    owner = _share(entry.value).owner
                except msgspec.MsgspecError:
                    log.warning("share %s has a malformed value; taken as free", name)
            self._shares[name] = _Seen(revision, now, owner)
            self._wake.set()

    async def _watch(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is not None:
                self._note(entry)

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
        value = _encode(LeaseMember(socket.gethostname(), os.getpid()))
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
                await asyncio.wait_for(self._wake.wait(), self.ttl / BEATS)
            self._wake.clear()
            try:
                await self.balance()
            except Exception as exc:
                log.warning("balancing shares failed: %s", exc)

    def _live(self, now: float) -> list[str]:
        live = [m for m, seen in self._members.items() if now - seen.at < self.ttl]
        if self.member not in live and now < self._valid_until:
            live.append(self.member)
        return live

    async def balance(self) -> None:
        """One pass: give up what was taken from it or belongs elsewhere, take what is free."""
        now = self._clock()
        live = self._live(now)
        await self._forget_silent(now)
        for name in self.names:
            seen = self._shares.get(name)
            if name in self.held:
                if seen is not None and seen.revision != self.held[name]:
                    del self.held[name]  # taken: deposed (a freeze outlived its lease)
                    await self._lost(name, False)
                elif rendezvous(name, live) != self.member:
                    await self._release(name)
            elif live and now < self._valid_until:
                since = await self._free_since(seen, now)
                if since is not None and (
                    rendezvous(name, live) == self.member or now - since >= self.ttl
                ):
                    await self._take(name, seen)

    async def _free_since(self, seen: _Seen | None, now: float) -> float | None:
        """Since when the share has been free as far as this process can tell (None: it is
        held): never taken, freed, or held by a member whose heartbeat this process has not
        seen move for a ttl and whose key, read now, has not moved either."""
        if seen is None:
            return self._started
        if seen.owner is None or seen.owner == self.member:  # freed, or lapsed here
            return seen.at
        member = self._members.get(seen.owner)
        if member is not None and now - member.at < self.ttl:
            return None
        assert self._kv is not None
        try:
            entry = await self._kv.get(self._member_key(seen.owner))
        except (KeyNotFoundError, KeyDeletedError):
            return seen.at if member is None else member.at + self.ttl
        if member is None or entry.revision != member.revision:
            self._members[seen.owner] = _Seen(entry.revision or 0, now)  # alive after all
            return None
        return member.at + self.ttl

    async def _take(self, name: str, seen: _Seen | None) -> None:
        assert self._kv is not None
        try:
            epoch = await self._kv.update(
                f"share.{name}", _encode(LeaseShare(self.member)), last=seen.revision if seen else 0
            )
        except KeyWrongLastSequenceError:
            return  # another member was quicker: the watch will tell who
        self._shares[name] = _Seen(epoch, self._clock(), self.member)
        self.held[name] = epoch
        log.info("took %s (epoch %d)", name, epoch)
        await self._gained(name, epoch)

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
        for member, seen in list(self._members.items()):
            if member != self.member and now - seen.at > FORGET * self.ttl:
                del self._members[member]
                with contextlib.suppress(Exception):
                    await self._kv.delete(self._member_key(member), last=seen.revision)
