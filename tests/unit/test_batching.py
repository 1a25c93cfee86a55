"""The adaptive batcher's rules, against an in-memory round trip (pure scheduling logic)."""

from __future__ import annotations

import asyncio

import pytest

from aitbc_gate.batching import Batcher
from tests.unit.waiting import until


class Lanes:
    """A fake bus: records each batch and answers it when the test releases it."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, list[int]]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail: Exception | None = None
        self.short = False

    async def send(self, lane: int, items: list[int]) -> list[int]:
        self.sent.append((lane, items))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        answers = [item * 10 for item in items]
        return answers[:-1] if self.short else answers


def batcher(lanes: Lanes, max_in_flight: int = 2, max_batch: int = 1000) -> Batcher[int, int]:
    return Batcher(
        lanes.send,
        4,
        lambda exc: RuntimeError(f"unavailable: {exc}"),
        name="test",
        max_in_flight=max_in_flight,
        max_batch=max_batch,
    )


async def test_one_turn_of_arrivals_leaves_as_one_batch_per_lane() -> None:
    lanes = Lanes()
    b = batcher(lanes)
    results = await asyncio.gather(*(b.submit(i % 2, i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    assert sorted(lanes.sent) == [(0, [0, 2, 4, 6, 8]), (1, [1, 3, 5, 7, 9])]


async def test_a_lone_item_is_sent_without_waiting_for_more() -> None:
    lanes = Lanes()
    assert await asyncio.wait_for(batcher(lanes).submit(3, 7), 1) == 70
    assert lanes.sent == [(3, [7])]


async def test_beyond_the_in_flight_limit_arrivals_gather_for_the_next_batch() -> None:
    lanes = Lanes()
    lanes.release.clear()
    b = batcher(lanes, max_in_flight=2)
    first = asyncio.ensure_future(b.submit(0, 1))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(b.submit(0, 2))  # a second batch may go out at once
    await until(lambda: len(lanes.sent) == 2)
    assert [items for _, items in lanes.sent] == [[1], [2]]
    later = [asyncio.ensure_future(b.submit(0, i)) for i in (3, 4, 5)]
    await asyncio.sleep(0.01)
    assert len(lanes.sent) == 2, "two batches already out: the third must wait"
    lanes.release.set()
    assert await asyncio.gather(first, second, *later) == [10, 20, 30, 40, 50]
    assert [items for _, items in lanes.sent] == [[1], [2], [3, 4, 5]]


async def test_batches_are_capped_at_max_batch() -> None:
    lanes = Lanes()
    b = batcher(lanes, max_in_flight=1, max_batch=3)
    await asyncio.gather(*(b.submit(0, i) for i in range(7)))
    assert [items for _, items in lanes.sent] == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("short", [False, True])
async def test_a_failed_round_trip_fails_every_item_of_its_batch_and_no_other(short: bool) -> None:
    lanes = Lanes()
    b = batcher(lanes)
    if short:
        lanes.short = True  # an answer of the wrong length is a failure, not a misattribution
    else:
        lanes.fail = TimeoutError("no reply")
    results = await asyncio.gather(*(b.submit(0, i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "unavailable" in str(r) for r in results)
    lanes.fail, lanes.short = None, False
    assert await b.submit(0, 5) == 50  # the lane recovers: nothing was left counted in flight
