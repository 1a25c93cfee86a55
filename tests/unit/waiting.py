"""Waiting for the event loop to reach a state, rather than for a fixed time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], object], timeout: float = 10.0, every: float = 0) -> None:
    """Lets the event loop turn until `condition()` holds, looking every `every` seconds (0:
    every turn). A fixed sleep ends too early when a loaded machine stalls the process or
    its children; the timeout only catches a hang."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(every)
