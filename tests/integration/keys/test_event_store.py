"""The event store contract, run the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from msgspec.structs import replace
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.events import AnyEvent, KeyCreated
from aitbc_keys import projections, store
from aitbc_keys.schema import api_keys, events
from tests.integration.keys.helpers import commit
from tests.key_histories import Log


def unchained(history: list[AnyEvent]) -> list[AnyEvent]:
    """Events as the caller made them: the store adds only their link in the hash chain."""
    return [replace(event, prev_hash="") for event in history]


async def test_appended_events_load_back_equal(engine: AsyncEngine, history_of: Any) -> None:
    history = history_of(3)
    stream = history[0].stream_id
    positions = await store.append(engine, [(stream, 0, history)])
    assert positions == [1, 2, 3]
    assert unchained(await store.load(engine, stream)) == history
    assert await store.load(engine, "key_nobody") == []
    assert unchained(await store.all_events(engine)) == history
    [(position, event)] = await store.events_after(engine, 1, limit=1)
    assert (position, replace(event, prev_hash="")) == (2, history[1])


async def test_appending_at_a_stale_version_is_a_conflict(
    engine: AsyncEngine,
    history_of: Any,
) -> None:
    history = history_of(2)
    stream = history[0].stream_id
    await store.append(engine, [(stream, 0, history[:1])])
    with pytest.raises(store.ConcurrencyError) as err:
        await store.append(engine, [(stream, 0, history[:1])])
    assert err.value.code == "CONFLICT"
    await store.append(engine, [(stream, 1, history[1:])])
    assert unchained(await store.load(engine, stream)) == history


async def test_a_failed_multi_stream_append_writes_nothing(
    engine: AsyncEngine,
    history_of: Any,
) -> None:
    first, second = history_of(1), history_of(1)
    await commit(engine, [(second[0].stream_id, 0, second)])
    async with engine.connect() as conn:
        before = await projections.snapshot(conn)
    with pytest.raises(store.ConcurrencyError):
        await commit(engine, [(first[0].stream_id, 0, first), (second[0].stream_id, 0, second)])
    assert await store.load(engine, first[0].stream_id) == []
    async with engine.connect() as conn:
        assert await projections.snapshot(conn) == before  # the read model rolled back too


async def test_concurrent_appends_at_the_same_version_exactly_one_wins(
    engine: AsyncEngine,
    history_of: Any,
) -> None:
    base = history_of(1)
    stream = base[0].stream_id
    await store.append(engine, [(stream, 0, base)])
    for round_ in range(5):
        version = 1 + round_
        contenders = [
            [replace(history_of(2, stream=stream)[1], version=version + 1)] for _ in range(2)
        ]
        results = await asyncio.gather(
            *(store.append(engine, [(stream, version, c)]) for c in contenders),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, list)]
        losers = [r for r in results if isinstance(r, store.ConcurrencyError)]
        assert (len(winners), len(losers)) == (1, 1), results
        loaded = await store.load(engine, stream)
        assert len(loaded) == version + 1
        assert unchained(loaded)[-1] in (contenders[0][0], contenders[1][0])


async def test_positions_are_gapless_and_in_commit_order(
    engine: AsyncEngine,
    history_of: Any,
) -> None:
    streams = [history_of(1) for _ in range(40)]

    async def append(history: list) -> list[int]:  # type: ignore[type-arg]
        return await store.append(engine, [(history[0].stream_id, 0, history)])

    positions = await asyncio.gather(*(append(h) for h in streams))
    assert sorted(p for ps in positions for p in ps) == list(range(1, 41))
    # A conflicting append must not burn a position either.
    with pytest.raises(store.ConcurrencyError):
        await append(streams[0])
    more = history_of(1)
    assert await append(more) == [41]
    listed = await store.events_after(engine, 0, limit=1000)
    assert [p for p, _ in listed] == list(range(1, 42))
    async with engine.connect() as conn:
        committed = (
            await conn.execute(
                sa.select(events.c.position, events.c.event_id).order_by(events.c.position)
            )
        ).all()
    assert [eid for _, eid in committed] == [e.event_id for _, e in listed]


async def test_read_models_equal_a_rebuild_from_the_events(
    engine: AsyncEngine,
    history_of: Any,
) -> None:
    now = datetime.now(UTC)
    log = Log()  # an account, then its plan changed and its master key regenerated at once
    log.account("acc_1", master="a" * 64, at=now)
    log.plan("acc_1", "pro", at=now)
    log.regenerate("acc_1_master", "b" * 64, grace=300, at=now)
    acc, master, plan, regen = (event for event, _ in log.delivery)
    await commit(engine, [("acc_1", 0, [acc]), ("acc_1_master", 0, [master])])
    await commit(engine, [("acc_1", 1, [plan]), ("acc_1_master", 1, [regen])])
    revoked = history_of(3, account="acc_1")
    await commit(engine, [(revoked[0].stream_id, 0, revoked)])

    async with engine.connect() as conn:
        live = await projections.snapshot(conn)
    assert len(live["key_secrets"]) == 3 and len(live["api_keys"]) == 2
    assert await projections.rebuild(engine) == 7
    async with engine.connect() as conn:
        assert await projections.snapshot(conn) == live
        view = await projections.account_view(conn, "acc_1")
        facts_old = await projections.key_facts(conn, ["a" * 64, "f" * 64], now)
        facts_late = await projections.key_facts(conn, ["a" * 64], now + timedelta(minutes=6))
    assert view is not None and (view.plan, view.master_key_id) == ("pro", "acc_1_master")
    assert list(facts_old) == ["a" * 64]  # the unknown hash is left out
    assert facts_old["a" * 64].secret_valid_until == now + timedelta(minutes=5)
    assert facts_late == {}


async def test_datetimes_round_trip_as_aware_utc(engine: AsyncEngine, history_of: Any) -> None:
    history = history_of(1)
    created = history[0]
    assert isinstance(created, KeyCreated)
    # An offset other than UTC and microseconds: both must survive the round trip.
    tz = timezone(timedelta(hours=5, minutes=30))
    occurred = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=tz)
    expires = datetime(2031, 6, 1, 0, 0, 0, 1, tzinfo=UTC)
    event = replace(created, occurred_at=occurred, expires_at=expires)
    await commit(engine, [(event.stream_id, 0, [event])])
    [loaded] = await store.load(engine, event.stream_id)
    assert loaded.occurred_at == occurred
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(events.c.occurred_at))).scalar_one()
        key = (await conn.execute(sa.select(api_keys))).one()
    assert row == occurred and row.tzinfo == UTC
    assert key.created_at == occurred and key.created_at.utcoffset() == timedelta(0)
    assert key.expires_at == expires and key.status == "active"
