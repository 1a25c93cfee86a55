"""Every view of the key events, against the one fold: the same histories (tests/key_views.py)
fed to the keys service's SQL read model (appended, and rebuilt) on SQLite and PostgreSQL and
its in-memory facts index (following the stream, and loaded from the log), and to the views
outside it (tests/outside_key_views.py): the edge's auth cache, the usage plan book and the
CLI's key history. Each must say what the fold says."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import messages as m
from aitbc_keys import projections
from aitbc_keys.facts import FactsIndex
from aitbc_keys.schema import READ_MODELS, api_keys, events
from tests.integration.keys.helpers import commit
from tests.key_histories import generated, hand_written, times_for
from tests.key_views import NOT_KEPT, Delivery, KeyRecord, ViewAdapter, disagreements
from tests.outside_key_views import CliHistoryView, EdgeCacheView, PlanBookView

HISTORIES = [*hand_written(), *generated(12)]


class IndexView:
    """The keys service's facts index, fed as the key event stream delivers."""

    name = "facts index"

    def __init__(self, engine: AsyncEngine) -> None:
        self.index = FactsIndex()

    async def feed(self, delivery: Delivery) -> None:
        for event, position in delivery:
            self.index.process(event, position)

    async def facts(self, secret_hash: str, now: datetime) -> m.KeyFacts | str | None:
        return self.index.facts(secret_hash, now)

    async def plan(self, account_id: str) -> str | None:
        return NOT_KEPT

    async def record(self, key_id: str) -> KeyRecord | str | None:
        return NOT_KEPT


class SqlView:
    """The SQL read model, written in each append's transaction (the unit of work). An append
    gives it each event once: a redelivery is the stream's, not the store's."""

    name = "SQL read model"

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def feed(self, delivery: Delivery) -> None:
        appended: set[int] = set()
        for event, position in delivery:
            if position not in appended:
                appended.add(position)
                await commit(self.engine, [(event.stream_id, event.version - 1, [event])])

    async def facts(self, secret_hash: str, now: datetime) -> m.KeyFacts | str | None:
        async with self.engine.connect() as conn:
            return (await projections.key_facts(conn, [secret_hash], now)).get(secret_hash)

    async def plan(self, account_id: str) -> str | None:
        async with self.engine.connect() as conn:
            view = await projections.account_view(conn, account_id)
        return None if view is None else view.plan

    async def record(self, key_id: str) -> KeyRecord | str | None:
        async with self.engine.connect() as conn:
            query = sa.select(api_keys).where(api_keys.c.key_id == key_id)
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return KeyRecord(
            row.key_id, row.account_id, row.name, row.kind, row.hint, row.status == "revoked",
            row.created_at, row.expires_at, row.revoked_at, row.regenerated_at, row.rate_limit,
        )  # fmt: skip


class RebuiltSqlView(SqlView):
    """The SQL read model refolded from the whole log (the operator's rebuild)."""

    name = "SQL read model, rebuilt"

    async def feed(self, delivery: Delivery) -> None:
        await super().feed(delivery)
        await projections.rebuild(self.engine, batch=3)


class LoadedIndexView(IndexView):
    """The facts index as a keys process starts it: loaded from the log."""

    name = "facts index, loaded"

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.engine = engine

    async def feed(self, delivery: Delivery) -> None:
        await SqlView(self.engine).feed(delivery)
        await self.index.load(self.engine)


VIEWS: list[Callable[[AsyncEngine], ViewAdapter]] = [
    IndexView,
    LoadedIndexView,
    SqlView,
    RebuiltSqlView,
    EdgeCacheView,
    PlanBookView,
    CliHistoryView,
]


@pytest.mark.parametrize("history", [d for _, d in HISTORIES], ids=[n for n, _ in HISTORIES])
async def test_every_view_says_what_the_fold_says(engine: AsyncEngine, history: Delivery) -> None:
    assert len(HISTORIES) > 12 and any(len(d) > 10 for _, d in HISTORIES)  # not vacuous
    found = []
    for make in VIEWS:
        async with engine.begin() as conn:  # each view starts from an empty database
            for table in (*READ_MODELS, events):
                await conn.execute(table.delete())
        view = make(engine)
        await view.feed(history)
        found += await disagreements(view, history, times_for(history))
    assert found == []
