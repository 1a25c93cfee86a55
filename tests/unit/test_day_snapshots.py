"""The day's counts in the snapshots: kept while the partition is idle, restored from a
snapshot of an earlier minute of the same day, and not from another day's."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from aitbc_contracts.plans import DAY, Plan
from aitbc_contracts.windows import Windows
from aitbc_usage import snapshots
from aitbc_usage.handlers import Deciding
from aitbc_usage.plans import PlanBook
from aitbc_usage.snapshots import KEEP_DAYS_SECONDS, Snapshotter, restore

QUOTA = Plan(600, per_day=100)


class Bucket:
    """What the snapshots need of a KV bucket: put and get, in memory."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.puts: list[str] = []

    async def put(self, key: str, value: bytes) -> None:
        self.values[key] = value
        self.puts.append(key)

    async def get(self, key: str) -> SimpleNamespace:
        return SimpleNamespace(value=self.values[key])


async def no_plan(_: str) -> str | None:
    return None


async def test_a_partition_with_day_counts_is_saved_while_idle_so_the_bucket_keeps_it() -> None:
    deciding = Deciding(PlanBook(no_plan), {"free": 60}, (3, 4))
    deciding.windows[3].decide_windows("acc_1", "k", QUOTA, None, time.time())
    bucket = Bucket()
    snapshotter = Snapshotter(None, deciding, interval=1.0)  # type: ignore[arg-type]
    await snapshotter.save(bucket)  # type: ignore[arg-type]
    assert bucket.puts == []  # nothing counted since the last save
    snapshotter.kept_at -= KEEP_DAYS_SECONDS
    await snapshotter.save(bucket)  # type: ignore[arg-type]
    assert bucket.puts == ["p3"]  # the partition with day counts, not the other


async def test_a_snapshot_of_an_earlier_minute_still_gives_todays_counts() -> None:
    now = time.time()
    earlier = Windows()
    for _ in range(30):
        earlier.decide_windows("acc_1", "k", QUOTA, None, now - 120)  # two minutes ago
    bucket = Bucket()
    await snapshots.save(bucket, 7, earlier)  # type: ignore[arg-type]
    successor = Windows()
    same_day = int((now - 120) // DAY) == int(now // DAY)
    assert await restore(bucket, 7, successor) == same_day  # type: ignore[arg-type]
    assert successor.accounts == {}  # another minute: a fresh one
    assert successor.days == ({"acc_1": 30} if same_day else {})


async def test_yesterdays_counts_are_not_restored() -> None:
    yesterday = Windows()
    yesterday.decide_windows("acc_1", "k", QUOTA, None, time.time() - DAY)
    bucket = Bucket()
    await snapshots.save(bucket, 7, yesterday)  # type: ignore[arg-type]
    successor = Windows()
    assert not await restore(bucket, 7, successor)  # type: ignore[arg-type]
    assert successor.days == {} and successor.accounts == {}


async def test_a_partition_that_cannot_be_saved_keeps_no_other_from_being_saved() -> None:
    """A save that fails (its snapshot over a NATS message's size, say) is tried again at the
    next round; the partitions after it in the round are saved all the same, not forgotten."""

    class Refusing(Bucket):
        async def put(self, key: str, value: bytes) -> None:
            if key == "p1":
                raise RuntimeError("maximum payload exceeded")
            await super().put(key, value)

    deciding = Deciding(PlanBook(no_plan), {"free": 60}, (1, 2, 3))
    deciding.dirty = {1, 2, 3}
    bucket = Refusing()
    snapshotter = Snapshotter(None, deciding, interval=1.0)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):  # the round says so: logged, and retried by its loop
        await snapshotter.save(bucket)  # type: ignore[arg-type]
    assert sorted(bucket.puts) == ["p2", "p3"]
    assert deciding.dirty == {1}  # to be tried again
