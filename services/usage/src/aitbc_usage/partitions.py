"""The partitions this process holds, as the leases on the bus give them (aitbc_runtime.ownership).

Taking a partition: its counts (the minute's, the second's, the day's) from the snapshot, its
epoch, then its subjects; the aggregator follows. Handing one over: its subjects first (no
answer after that), then its last counts into the snapshot, so that the next holder starts
where this one stopped. A lease that lapsed or was taken loses the partition without a
snapshot: another holder may be writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.js.kv import KeyValue

from aitbc_contracts.subjects import USAGE_LEASES_BUCKET
from aitbc_contracts.windows import Windows
from aitbc_runtime.ownership import Ownership
from aitbc_runtime.process import cancel_and_wait
from aitbc_usage.aggregator import Aggregator
from aitbc_usage.answering import Answering
from aitbc_usage.handlers import Deciding
from aitbc_usage.snapshots import restore, save

log = logging.getLogger("aitbc.usage.partitions")


def share(partition: int) -> str:
    return f"p{partition}"


class Partitions:
    def __init__(
        self,
        nc: NATS,
        deciding: Deciding,
        counters: KeyValue,
        aggregator: Aggregator,
        partitions: tuple[int, ...],
        *,
        lease_seconds: float,
        replicas: int,
    ) -> None:
        self.deciding = deciding
        self.counters = counters
        self.aggregator = aggregator
        self.answering = Answering(nc, deciding)
        self.ownership = Ownership(
            nc,
            USAGE_LEASES_BUCKET,
            [share(p) for p in partitions],
            self._gained,
            self._lost,
            ttl=lease_seconds,
            replicas=replicas,
        )
        self.restored = 0  # partitions that resumed their minute from a snapshot
        self._subscriptions: dict[int, list[Subscription]] = {}
        self._regroup = asyncio.Event()
        self._regrouping: asyncio.Task[None] | None = None
        holds = self.ownership.holds
        deciding.serves = lambda partition: holds(share(partition))

    def owned(self) -> int:
        """The partitions this process decides for now (a lapsed lease decides none)."""
        return sum(1 for partition in self.deciding.windows if self.deciding.serves(partition))

    async def start(self) -> None:
        self._regrouping = asyncio.create_task(self._follow(), name="usage-regroup")
        await self.ownership.start()

    async def stop(self) -> None:
        """Hands every partition over, its counts saved; then the aggregator stops."""
        await self.ownership.stop()
        if self._regrouping is not None:
            await cancel_and_wait([self._regrouping])
        await cancel_and_wait(self.answering.later)

    async def _gained(self, name: str, epoch: int) -> None:
        partition = int(name[1:])
        window = Windows()
        # A snapshot that cannot be read fails the take (the share is handed back, and taken
        # again when it can be): a fresh minute would admit the whole limit again.
        self.restored += await restore(self.counters, partition, window)
        self.deciding.windows[partition] = window
        self.deciding.epochs[partition] = epoch
        self._subscriptions[partition] = await self.answering.subscribe(partition)
        self._regroup.set()

    async def _lost(self, name: str, handed_over: bool) -> None:
        partition = int(name[1:])
        for subscription in self._subscriptions.pop(partition, []):
            with contextlib.suppress(Exception):  # the connection may be gone already
                await subscription.unsubscribe()
        window = self.deciding.windows.pop(partition, None)
        if handed_over and window is not None:
            try:
                await save(self.counters, partition, window)
            except Exception as exc:  # the next holder resumes from the last periodic save
                log.warning("could not save partition %d on handover: %s", partition, exc)
        self.deciding.epochs.pop(partition, None)
        self.deciding.dirty.discard(partition)
        self._regroup.set()

    async def _follow(self) -> None:
        """Points the aggregator at the partitions held, once moves have settled."""
        while True:
            await self._regroup.wait()
            await asyncio.sleep(0.1)  # a start or a rebalance moves several at once
            self._regroup.clear()
            await self.aggregator.follow(tuple(sorted(self.deciding.windows)))
