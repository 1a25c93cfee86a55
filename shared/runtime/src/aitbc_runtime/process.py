"""How every service process runs: logging (aitbc_runtime.logs) and tracing
(aitbc_runtime.tracing) set up, uvloop, and a clean stop on SIGINT/SIGTERM (the last spans
flushed after it)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvloop

from aitbc_runtime import logs, tracing

log = logging.getLogger("aitbc.process")

LOST_CANCEL_RETRY = 1.0  # seconds a cancelled task may take to end before it is cancelled again


def start_held(tasks: set[asyncio.Task[Any]], work: Coroutine[Any, Any, Any]) -> None:
    """Runs `work` as a task kept in `tasks` until it ends: the event loop holds tasks only
    weakly, and a stop finds in `tasks` what is still running."""
    task = asyncio.get_running_loop().create_task(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], retry: float = LOST_CANCEL_RETRY
) -> None:
    """Cancels `tasks` and waits until every one has ended. One that has not ended `retry`
    seconds after its cancellation is cancelled again: on Python 3.11, asyncio.wait_for (under
    every nats-py request) returns a result that arrived in the same turn as the cancellation
    and drops the cancellation, so a task looping around a request would go on, and a stop
    that awaits it would wait for ever. The caller's own cancellation is not swallowed, and
    the tasks' failures are logged, not raised: a stop is no place for them."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry)
    for task in tasks:
        if not task.cancelled() and (failure := task.exception()) is not None:
            log.warning("%s had failed: %r", task.get_name(), failure)


async def finish(tasks: Iterable[asyncio.Task[Any]], grace: float) -> None:
    """Lets `tasks` end on their own for up to `grace` seconds, then cancels the rest and
    waits for them. Stopping work this way, rather than cancelling it at once, lets a task
    that is inside a database read give its connection back (an aiosqlite connection
    cancelled mid-read cannot be, only dropped later)."""
    tasks = list(tasks)
    if tasks:
        await asyncio.wait(tasks, timeout=grace)
    await cancel_and_wait(tasks)


async def until_stopped(service: AbstractAsyncContextManager[Any], name: str) -> None:
    """Runs `service` until SIGINT or SIGTERM, then leaves it (which stops it cleanly)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with service:
        # What starting made (modules, indexes loaded at start) lives as long as the process:
        # out of the collector's sight, so a full collection later is not a pause of many ms.
        gc.freeze()
        await stop.wait()
        logging.getLogger(name).info("%s stopping", name)


def run_service(
    service: Callable[[], AbstractAsyncContextManager[Any]], name: str, log_level: str
) -> None:
    """The body of a service's console script; `name` is also its logs' `service`, and its
    traces' service name unless OTEL_SERVICE_NAME says otherwise."""
    logs.configure(name, log_level)
    with tracing.configured(name):
        uvloop.run(until_stopped(service(), name))
