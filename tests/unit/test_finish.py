"""Stopping background work: it may end on its own within the grace period, and only what
outlives it is cancelled, and waited for, before the caller goes on."""

from __future__ import annotations

import asyncio

from aitbc_contracts.process import finish


async def test_work_that_ends_within_the_grace_is_not_cancelled() -> None:
    ended = asyncio.Event()

    async def read() -> None:
        await asyncio.sleep(0.01)
        ended.set()

    task = asyncio.create_task(read())
    await finish([task], grace=1.0)
    assert ended.is_set() and not task.cancelled()


async def test_work_that_outlives_the_grace_is_cancelled_and_waited_for() -> None:
    cleaned = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.01)  # its clean-up takes a while: finish waits for it
            cleaned.set()

    async def failing() -> None:
        raise RuntimeError("its failure is not the caller's")

    tasks = [asyncio.create_task(stuck()), asyncio.create_task(failing())]
    await finish(tasks, grace=0.05)
    assert tasks[0].cancelled() and cleaned.is_set()
    assert isinstance(tasks[1].exception(), RuntimeError)


async def test_nothing_to_finish_returns_at_once() -> None:
    await finish([], grace=10.0)
