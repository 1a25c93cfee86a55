"""Stopping background work: it may end on its own within the grace period, and only what
outlives it is cancelled, and waited for, before the caller goes on; a cancellation that
was lost is repeated."""

from __future__ import annotations

import asyncio
import sys

import pytest

from aitbc_runtime.process import cancel_and_wait, finish


async def test_work_that_ends_within_the_grace_is_not_cancelled() -> None:
    ended = asyncio.Event()

    async def read() -> None:
        await asyncio.sleep(0.01)
        ended.set()

    task = asyncio.create_task(read())
    await finish([task], grace=1.0)
    assert ended.is_set() and not task.cancelled()


async def test_work_that_outlives_the_grace_is_cancelled_and_waited_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleaned = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.01)  # its clean-up takes a while: finish waits for it
            cleaned.set()

    async def failing() -> None:
        raise RuntimeError("its failure is not the caller's")

    tasks = [asyncio.create_task(stuck()), asyncio.create_task(failing(), name="failing")]
    await finish(tasks, grace=0.05)
    assert tasks[0].cancelled() and cleaned.is_set()
    assert isinstance(tasks[1].exception(), RuntimeError)
    assert "failing had failed: RuntimeError" in caplog.text


async def turns_to_finish(tasks: list[asyncio.Task[None]], grace: float) -> int:
    """How many turns of the event loop `finish` takes: a count, not a time, so a loaded
    machine cannot change it (waiting out the grace would be thousands of turns)."""
    finishing = asyncio.create_task(finish(tasks, grace=grace))
    turns = 0
    while not finishing.done() and turns < 1000:
        await asyncio.sleep(0)
        turns += 1
    assert finishing.done(), "finish waited although there was nothing to wait for"
    await finishing
    return turns


async def test_nothing_to_finish_returns_at_once() -> None:
    assert await turns_to_finish([], grace=3600) == 1  # its own first step, no waiting


async def test_work_that_has_ended_already_is_not_waited_for() -> None:
    ended = asyncio.create_task(asyncio.sleep(0))
    await ended
    assert await turns_to_finish([ended], grace=3600) <= 5  # its wait sees them done
    assert not ended.cancelled()


async def test_a_cancellation_lost_in_a_loop_is_repeated_until_the_task_ends() -> None:
    """A loop around wait_for, as around every nats-py request: on Python 3.11 a reply that
    arrives in the turn of the cancellation is returned and the cancellation dropped."""
    loop = asyncio.get_running_loop()
    replies: list[asyncio.Future[int]] = [loop.create_future()]
    rounds = 0

    async def follow() -> None:
        nonlocal rounds
        while True:
            await asyncio.wait_for(replies[-1], 5)
            rounds += 1
            replies.append(loop.create_future())

    task = asyncio.create_task(follow())
    await asyncio.sleep(0)  # it waits for its first reply
    replies[-1].set_result(1)  # the reply and the stop in the same turn
    async with asyncio.timeout(5):
        await cancel_and_wait([task], retry=0.05)
    assert task.cancelled()
    if sys.version_info < (3, 12):  # where the first cancellation is lost, it was
        assert rounds == 1


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(60)  # its clean-up outlasts the caller's patience

    task = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait([task], retry=10))
    await asyncio.sleep(0.01)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert not task.done()  # still in its clean-up: the caller left, the task was not waited for
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
