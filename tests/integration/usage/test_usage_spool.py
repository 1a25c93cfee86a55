"""A killed edge's usage events are sent by its next start from its spool, and counted once."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import nats

from aitbc_gate.usage_events import UsagePublisher
from aitbc_runtime.process import cancel_and_wait
from tests.integration.usage.conftest import System
from tests.integration.usage.usage_records import served, totals, wait_requests


async def test_the_next_start_sends_what_a_killed_edge_had_not_stored(
    system: System, tmp_path: Path
) -> None:
    account = "acc_" + uuid.uuid4().hex[:16]
    spool = tmp_path / "api.usage-spool"
    async with system.usage() as service:
        nc = await nats.connect(
            **system.nats.options("edge"), max_reconnect_attempts=-1, reconnect_time_wait=0.2
        )
        first = UsagePublisher(nc, capacity=100, linger=0.01, spool=spool)
        first.start()
        for _ in range(5):
            first.emit(served(account))
        assert (await wait_requests(service.engine, account, 5))["requests"] == 5
        system.nats.stop()
        for _ in range(20):
            first.emit(served(account))  # buffered: the stream is away
        # SIGKILL: the task ends where it is, the kernel closes the files, nothing is flushed
        assert first._task is not None and first.spool is not None
        await cancel_and_wait([first._task])
        os.close(first.spool._fd)
        os.close(first.spool._lock)
        await nc.close()

        system.nats.start()
        nc = await nats.connect(**system.nats.options("edge"))
        again = UsagePublisher(nc, capacity=100, linger=0.01, spool=spool)
        again.start()
        await wait_requests(service.engine, account, 25)
        await again.stop()
        await nc.close()
        await asyncio.sleep(0.5)  # the aggregator's turns: a duplicate would be counted by now
        counted = await totals(service.engine, account)
    assert counted["requests"] == 25  # the 20 once, the 5 already stored not again
    assert list(spool.glob("*.spool")) == []  # all stored: nothing left on disk
