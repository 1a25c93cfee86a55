"""Counter snapshots in a NATS KV bucket, so a restarted usage process keeps the minute's counts,
and the second's and the UTC day's of plans that have them.

A crash loses at most one snapshot interval of admissions: that bounds over-admission. The
bucket forgets a snapshot not written for two minutes; a partition with daily counts is saved
at least every KEEP_DAYS_SECONDS, so an idle hour does not cost its accounts their day's count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec
from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from aitbc_contracts.plans import DAY
from aitbc_contracts.subjects import USAGE_COUNTERS_BUCKET
from aitbc_contracts.usage import WINDOW_SECONDS
from aitbc_contracts.windows import Windows
from aitbc_runtime.bus import key_value
from aitbc_runtime.process import cancel_and_wait
from aitbc_usage.handlers import Deciding

log = logging.getLogger("aitbc.usage.snapshots")

KEEP_DAYS_SECONDS = 30.0  # well within the bucket's TTL (2 minutes)


class Snapshot(msgspec.Struct):
    minute: int
    accounts: dict[str, int]
    keys: dict[str, int]
    # units lent and not yet settled when it was saved: a handover's settlements still arrive
    leased: dict[str, int] = {}
    # the current second's and UTC day's counts, of accounts whose plan has those windows
    second: int = -1
    seconds: dict[str, int] = {}
    day: int = -1
    days: dict[str, int] = {}


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Snapshot).decode


async def _bucket(nc: NATS, replicas: int) -> KeyValue:
    return await key_value(
        nc,
        KeyValueConfig(
            bucket=USAGE_COUNTERS_BUCKET,
            history=1,
            storage=StorageType.FILE,
            ttl=2 * WINDOW_SECONDS,
            replicas=replicas,
        ),
    )


async def counters(nc: NATS, replicas: int = 1) -> KeyValue:
    """The snapshots' bucket, made with `replicas` while it is missing."""
    return await _bucket(nc, replicas)


async def restore(bucket: KeyValue, partition: int, window: Windows) -> bool:
    """Loads the partition's counts of the current windows into `window`: whether there were
    any (a snapshot of an earlier minute may still hold today's counts)."""
    try:
        entry = await bucket.get(f"p{partition}")
    except KeyNotFoundError:
        return False
    if entry.value is None:
        return False
    try:
        snapshot = _decode(entry.value)
    except msgspec.MsgspecError:
        log.warning("ignored a malformed snapshot of partition %d", partition)
        return False
    now = time.time()
    minute, second, day = int(now // WINDOW_SECONDS), int(now), int(now // DAY)
    window.restore_longer(
        snapshot.second, snapshot.seconds if snapshot.second == second else {},
        snapshot.day, snapshot.days if snapshot.day == day else {},
    )  # fmt: skip
    if snapshot.minute == minute:
        window.restore(snapshot.minute, snapshot.accounts, snapshot.keys, snapshot.leased, now)
    return snapshot.minute == minute or (snapshot.day == day and bool(snapshot.days))


async def save(bucket: KeyValue, partition: int, window: Windows) -> None:
    snapshot = Snapshot(
        window.minute, window.accounts, window.keys, window.leased,
        window.second, window.seconds, window.day, window.days,
    )  # fmt: skip
    await bucket.put(f"p{partition}", _encode(snapshot))


class Snapshotter:
    def __init__(self, nc: NATS, deciding: Deciding, interval: float, replicas: int = 1) -> None:
        self.nc = nc
        self.deciding = deciding
        self.interval = interval
        self.replicas = replicas
        # When a round last saved every partition it had to (or had none): the snapshots'
        # age (aitbc_usage.metrics.SNAPSHOT_AGE), on this process's monotonic clock.
        self.saved_at = time.monotonic()
        self.kept_at = time.monotonic()  # when partitions with daily counts were last all saved
        self._task: asyncio.Task[None] | None = None

    def age(self) -> float:
        return time.monotonic() - self.saved_at

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-snapshots")

    async def save(self, bucket: KeyValue) -> None:
        """Writes the partitions counted since the last time, while this process holds them:
        a deposed holder must not write over its successor's counts."""
        dirty, self.deciding.dirty = self.deciding.dirty, set()
        if time.monotonic() - self.kept_at >= KEEP_DAYS_SECONDS:
            self.kept_at = time.monotonic()
            dirty.update(p for p, window in self.deciding.windows.items() if window.days)
        failure: Exception | None = None
        for partition in dirty:
            window = self.deciding.windows.get(partition)
            if window is None:
                continue
            if not self.deciding.serves(partition):  # paused: saved if it is served again
                self.deciding.dirty.add(partition)
                continue
            try:
                await save(bucket, partition, window)
            except Exception as exc:
                # Tried again next time; meanwhile one partition that cannot be saved must not
                # keep the others from being saved (they were taken out of `dirty`).
                self.deciding.dirty.add(partition)
                failure = failure or exc
        if failure is not None:
            raise failure
        self.saved_at = time.monotonic()

    async def _run(self) -> None:
        while True:
            try:
                bucket = await _bucket(self.nc, self.replicas)
                while True:
                    await asyncio.sleep(self.interval)
                    await self.save(bucket)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("snapshot failed (%s); retrying", exc)
                await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            with contextlib.suppress(Exception):
                await self.save(await _bucket(self.nc, self.replicas))  # a clean stop loses nothing
