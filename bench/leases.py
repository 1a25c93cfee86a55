"""Which usage process holds which partition, read from the lease bucket the processes share
(aitbc_runtime.ownership): `share.p<n>` names the holder's member id, and `member.<id>` says
which process that is (its pid). The partition phases (bench/partition_phases.py) kill a
partition's holder by it, and wait for the partitions to settle before measuring.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Collection

import msgspec
from nats.aio.client import Client as NATS
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from aitbc_contracts.ownership import LeaseMember, LeaseShare
from aitbc_contracts.subjects import USAGE_LEASES_BUCKET, USAGE_PARTITIONS
from aitbc_runtime.lease_view import rendezvous
from aitbc_runtime.process import cancel_and_wait
from aitbc_usage.partitions import share

_member = msgspec.json.Decoder(LeaseMember).decode
_share = msgspec.json.Decoder(LeaseShare).decode


class LeaseView:
    """The bucket as its watch last told it."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}  # member id -> its process
        self.holders: dict[int, tuple[str, int]] = {}  # partition -> (member id, epoch)
        # Seconds each handover left a partition free (its share deleted, then taken again),
        # as this watch saw them; and since when each free one has been free.
        self.gaps: list[float] = []
        self._freed: dict[int, float] = {}

    def note(self, entry: KeyValue.Entry) -> None:
        kind, _, name = entry.key.partition(".")
        gone = entry.operation in (KV_DEL, KV_PURGE) or not entry.value
        if kind == "member":
            if gone:
                self.pids.pop(name, None)
            else:
                self.pids[name] = _member(entry.value or b"").pid
        elif kind == "share" and name.startswith("p"):
            partition, now = int(name[1:]), time.monotonic()
            if gone:
                self.holders.pop(partition, None)
                self._freed[partition] = now
            else:  # the revision that wrote the share is its holder's epoch
                self.holders[partition] = (_share(entry.value or b"").owner, entry.revision or 0)
                if partition in self._freed:
                    self.gaps.append(now - self._freed.pop(partition))

    def holder(self, partition: int) -> tuple[int, int] | None:
        """The pid and epoch of the partition's holder; None while it has none."""
        held = self.holders.get(partition)
        if held is None or held[0] not in self.pids:
            return None
        return self.pids[held[0]], held[1]

    def settled(self, pids: Collection[int]) -> bool:
        """Every process of `pids` has joined, and every partition is held where rendezvous
        hashing over them puts it: nothing is left to move. (Killed processes' member keys
        stay in the bucket for a while; only `pids` count as alive.)"""
        members = [member for member, pid in self.pids.items() if pid in pids]
        if len(members) != len(pids):
            return False
        return all(
            (held := self.holders.get(p)) is not None and held[0] == rendezvous(share(p), members)
            for p in range(USAGE_PARTITIONS)
        )

    async def until_settled(self, pids: Collection[int], within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while not self.settled(pids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"usage partitions did not settle on {sorted(pids)}: {self}")
            await asyncio.sleep(0.02)

    def __str__(self) -> str:
        return f"members {self.pids}, holders {dict(sorted(self.holders.items()))}"


@contextlib.asynccontextmanager
async def watching(nc: NATS) -> AsyncIterator[LeaseView]:
    """A LeaseView kept up to date by a watch of the bucket, as long as the block runs (`nc`:
    a connection of the usage role, in whose account the bucket is)."""
    kv = await nc.jetstream().key_value(USAGE_LEASES_BUCKET)
    watcher = await kv.watchall()
    view = LeaseView()

    async def follow() -> None:
        async for entry in watcher:
            if entry is not None:  # None: the end of what the bucket held at the start
                view.note(entry)

    task = asyncio.create_task(follow(), name="bench-lease-view")
    try:
        yield view
    finally:
        await cancel_and_wait([task])
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]
