"""The keys service's background loops that appends wake (the outbox relay, the checkpoints):
started once, woken after each commit, stopped between two rounds of their work."""

from __future__ import annotations

import asyncio

from aitbc_runtime.process import finish


class WokenLoop:
    """Runs `run()` as a task; `run()` loops until `_stopping`, waiting on `_wake` between
    rounds. `stop()` lets the round in progress end, cancelling it only if that takes longer
    than `grace` seconds (see `finish`)."""

    def __init__(self, name: str, grace: float) -> None:
        self._name = name
        self._grace = grace
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        """Called after each append: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> asyncio.Task[None]:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name=self._name)
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await finish([self._task], self._grace)
            self._task = None

    async def run(self) -> None:
        raise NotImplementedError
