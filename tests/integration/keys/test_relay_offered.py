"""The outbox relay publishes what its own process has just committed without reading it back
from the store (on SQLite and PostgreSQL, against a real nats-server): a revocation reaches the
stream even while the store's reads are slow, and still exactly once, in order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_keys import store
from aitbc_keys.facts import FactsIndex
from aitbc_keys.outbox import OutboxRelay
from aitbc_keys.service_layer.unit_of_work import SqlUnitOfWork
from aitbc_runtime.bus_access import BusAccess
from tests.integration.keys.helpers import (
    Connect,
    append_keys,
    assert_exactly_once_in_order,
    wait_for_stream,
)
from tests.unit.waiting import until


async def _started(relay: OutboxRelay, published: int) -> None:
    """The relay has read the stream and published the store's `published` events."""
    relay.start()
    await until(lambda: relay.position == published)
    await asyncio.sleep(0.2)  # and found nothing more: it waits to be woken


async def test_what_is_committed_here_reaches_the_stream_while_the_stores_reads_are_stuck(
    engine: AsyncEngine,
    auditor: BusAccess,
    connect: Connect,
    history_of: Any,
    stream_contents: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = await append_keys(engine, history_of, keys=2, events=1)
    relay = OutboxRelay(engine, await connect(), poll_interval=30)
    await _started(relay, len(before))
    released = asyncio.Event()
    reading = store.records_after

    async def stuck(*args: Any, **kwargs: Any) -> list[store.Record]:
        await released.wait()
        return await reading(*args, **kwargs)

    monkeypatch.setattr(store, "records_after", stuck)
    try:
        history = history_of(2)
        uow = SqlUnitOfWork(engine, FactsIndex(), relay.offer, datetime.now(UTC))
        await uow.commit([(history[0].stream_id, 0, history)])
        contents = await wait_for_stream(auditor, stream_contents, 4, timeout=5)
        assert_exactly_once_in_order(contents, before + history)
    finally:
        released.set()
        await relay.stop()


async def test_offered_events_after_a_gap_wait_for_the_store_and_go_out_in_order(
    engine: AsyncEngine,
    auditor: BusAccess,
    connect: Connect,
    history_of: Any,
    stream_contents: Any,
) -> None:
    relay = OutboxRelay(engine, await connect(), poll_interval=30)
    await _started(relay, 0)
    try:
        elsewhere = await append_keys(engine, history_of, keys=1, events=2)  # not offered
        history = history_of(1)
        uow = SqlUnitOfWork(engine, FactsIndex(), relay.offer, datetime.now(UTC))
        await uow.commit([(history[0].stream_id, 0, history)])  # positions 3: after a gap
        contents = await wait_for_stream(auditor, stream_contents, 3, timeout=5)
        assert_exactly_once_in_order(contents, elsewhere + history)
    finally:
        await relay.stop()
