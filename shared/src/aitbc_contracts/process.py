"""How every service process runs: logging set up, uvloop, and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvloop

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


async def finish(tasks: Iterable[asyncio.Task[Any]], grace: float) -> None:
    """Lets `tasks` end on their own for up to `grace` seconds, then cancels the rest and
    waits for them. Stopping work this way, rather than cancelling it at once, lets a task
    that is inside a database read give its connection back (an aiosqlite connection
    cancelled mid-read cannot be, only dropped later)."""
    tasks = set(tasks)
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=grace)
    for task in late:
        task.cancel()
    for task in tasks:  # each one's end is seen, a failure too: a stop is no place to raise it
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


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
    """The body of a service's console script."""
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    uvloop.run(until_stopped(service(), name))
