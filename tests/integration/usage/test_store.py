"""The aggregates' commit on SQLite and PostgreSQL: counts and cursors move in one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_runtime.sql import create_engine
from aitbc_usage import store
from tests.integration.usage.usage_records import T0, event, totals

A, B, C = "usage-aggregator-1", "usage-aggregator-2", "usage-aggregator-3"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await store.prepare(engine)
    yield engine
    await engine.dispose()


async def positions(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return await store.cursors(conn, [A, B, C])


async def test_every_covered_cursor_moves_to_the_last_sequence(engine: AsyncEngine) -> None:
    read = [(A, 1, [event("acc_a")]), (B, 2, [event("acc_b"), event("acc_b", status=404)])]
    assert await store.commit_batch(engine, [A, B, C], read) == {A: 2, B: 2, C: 2}
    assert await positions(engine) == {A: 2, B: 2, C: 2}
    assert (await totals(engine, "acc_b"))["requests"] == 2
    assert (await totals(engine, "acc_b"))["4xx"] == 1


async def test_a_replay_is_skipped_per_cursor(engine: AsyncEngine) -> None:
    # A counted through 5, B through 2 (a process owned only A for a while).
    await store.commit_batch(engine, [A], [(A, 5, [event("acc_a")])])
    await store.commit_batch(engine, [B], [(B, 2, [event("acc_b")])])
    # Reading both again from the lowest position, 2: A's 4 and 5 were counted already.
    read = [
        (B, 3, [event("acc_b")]),
        (A, 4, [event("acc_a")]),
        (A, 5, [event("acc_a")]),
        (B, 6, [event("acc_b"), event("acc_b")]),
        (A, 7, [event("acc_a")]),
    ]
    assert await store.commit_batch(engine, [A, B], read) == {A: 7, B: 7}
    assert (await totals(engine, "acc_a"))["requests"] == 2
    assert (await totals(engine, "acc_b"))["requests"] == 4
    # The same stretch once more, as after a crash just after the commit: nothing changes.
    assert await store.commit_batch(engine, [A, B], read) == {A: 7, B: 7}
    assert (await totals(engine, "acc_a"))["requests"] == 2
    assert (await totals(engine, "acc_b"))["requests"] == 4


async def test_last_use_keeps_the_newest_time_across_commits(engine: AsyncEngine) -> None:
    later = T0 + timedelta(seconds=30)
    await store.commit_batch(engine, [A], [(A, 1, [event("acc_a", at=later)])])
    await store.commit_batch(engine, [A], [(A, 2, [event("acc_a", at=T0), event("acc_a")])])
    assert await store.last_used(engine, "acc_a") == {"key_1": later}
    assert (await totals(engine, "acc_a"))["requests"] == 3


async def test_a_series_reads_times_without_an_offset_as_utc(engine: AsyncEngine) -> None:
    await store.commit_batch(engine, [A], [(A, 1, [event("acc_a")])])
    start, end = T0.replace(tzinfo=None), (T0 + timedelta(minutes=1)).replace(tzinfo=None)
    assert sum(m.requests for m in await store.series(engine, "acc_a", start, end, None)) == 1
    first = datetime(1, 1, 1)  # once out of range as local time: the query failed
    assert await store.series(engine, "acc_a", first, first, None) == []


async def test_would_be_refusals_in_shadow_mode_are_admitted_and_counted_apart(
    engine: AsyncEngine,
) -> None:
    decisions = ["admitted", "shadow_limited", "shadow_limited", "limited"]
    await store.commit_batch(engine, [A], [(A, 1, [event("acc_a", decision=d) for d in decisions])])
    [minute] = await store.series(engine, "acc_a", T0, T0 + timedelta(minutes=1), None)
    assert (minute.requests, minute.admitted, minute.limited) == (4, 3, 1)
    assert minute.shadow_limited == 2
