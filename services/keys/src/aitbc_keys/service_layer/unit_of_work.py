"""One command's work on the keys database: its reads, and at most one atomic change.

A change is appended to the event log and the SQL read model follows it inside the append's
write transaction, so the two commit together or not at all. After the commit, the events go
to this process's facts index (its next check knows them before the stream brings them back)
and, as stored, to `on_commit`: the other keys processes are told, and the outbox relay is
woken wherever it runs, and handed them when it runs here (aitbc_keys.commits: a revocation
should reach the edges at once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aitbc_contracts.events import AnyEvent, KeyKind
from aitbc_contracts.keys import KeyEventView, State, fold
from aitbc_contracts.messages import AccountView
from aitbc_keys import projections, store
from aitbc_keys.domain import MAX_KEYS_PER_ACCOUNT
from aitbc_keys.projections import SqlReadModel

log = logging.getLogger("aitbc_keys.unit_of_work")

Decide = Callable[[list[AnyEvent]], list[AnyEvent]]  # a stream's history -> its new events


class UnitOfWork(Protocol):
    """What the service layer needs of a command's work (a fake in the unit tests)."""

    now: datetime  # the one instant the command is decided at
    max_keys: int  # live keys an account may hold (MAX_KEYS_PER_ACCOUNT)

    async def load(self, stream_id: str) -> list[AnyEvent]: ...

    def known_kind(self, key_id: str) -> KeyKind | None:
        """A key's kind when this process knows it without a load (None: load the stream)."""
        ...

    async def live_keys(self, account_id: str) -> int:
        """How many of the account's keys are neither revoked nor expired, at `now`."""
        ...

    async def load_account(self, account_id: str) -> list[AnyEvent]:
        """Every event of an account and of its keys, in log order."""
        ...

    async def account_view(self, account_id: str) -> AccountView | None: ...

    async def rebuild_read_model(self) -> int: ...

    async def commit(self, batches: Sequence[store.Batch]) -> None:
        """Append the batches atomically; raises store.ConcurrencyError when another writer
        won, store.TooLate when the command's time is up."""
        ...

    async def update(self, stream_id: str, decide: Decide) -> tuple[list[AnyEvent], list[AnyEvent]]:
        """One stream's change: its history is read in the write transaction that appends
        what `decide` makes of it, so no other writer comes between. The history before, and
        the events appended; store.TooLate when the command's time is up."""
        ...


class SqlUnitOfWork:
    """The keys database's unit of work, for one command."""

    def __init__(
        self,
        engine: AsyncEngine,
        index: KeyEventView,
        on_commit: Callable[[Sequence[store.Record]], None],
        now: datetime,
        deadline: float | None = None,
        max_keys: int = MAX_KEYS_PER_ACCOUNT,
        kinds: Callable[[str], KeyKind | None] = lambda _: None,
    ) -> None:
        self.engine = engine
        self.index = index
        self.known_kind = kinds  # the keys' kinds the facts index holds (they never change)
        self.on_commit = on_commit
        self.now = now  # the one instant the command is decided at
        self.deadline = deadline  # time.monotonic() past which nothing commits (store.TooLate)
        self.max_keys = max_keys
        self._loaded: dict[str, list[AnyEvent]] = {}  # streams as this command loaded them

    async def load(self, stream_id: str) -> list[AnyEvent]:
        events = self._loaded[stream_id] = await store.load(self.engine, stream_id)
        return events

    async def live_keys(self, account_id: str) -> int:
        async with self.engine.connect() as conn:
            return await projections.live_keys(conn, account_id, self.now)

    async def load_account(self, account_id: str) -> list[AnyEvent]:
        return await store.load_account(self.engine, account_id)

    async def account_view(self, account_id: str) -> AccountView | None:
        async with self.engine.connect() as conn:
            return await projections.account_view(conn, account_id)

    async def rebuild_read_model(self) -> int:
        return await projections.rebuild(self.engine)

    async def commit(self, batches: Sequence[store.Batch]) -> None:
        """Append the batches (store.append_in) with the read model in the same transaction;
        raises store.ConcurrencyError when another writer won, store.TooLate past the deadline."""
        async with store.appending(self.engine, self.deadline) as conn:
            new, records = await self._append(conn, batches)
        self._committed(new, records)

    async def update(self, stream_id: str, decide: Decide) -> tuple[list[AnyEvent], list[AnyEvent]]:
        """The stream read under the write lock, in place of the read before it and the
        commit's check of its version: four statements fewer (BEGIN, SELECT, ROLLBACK; the
        version's SELECT) on a change's way, and no other writer can win meanwhile. Deciding
        is the domain's pure work, so the lock is held no longer than the check held it."""
        async with store.appending(self.engine, self.deadline) as conn:
            history = self._loaded[stream_id] = await store.load_in(conn, stream_id)
            new = decide(history)
            _, records = await self._append(conn, [(stream_id, len(history), new)], True)
        self._committed(new, records)
        return history, new

    async def _append(
        self, conn: AsyncConnection, batches: Sequence[store.Batch], read_here: bool = False
    ) -> tuple[list[AnyEvent], list[store.Record]]:
        """Inside the write transaction: the batches appended, and the read model after them
        (`read_here`: their streams were read in it, store.append_in)."""
        new = [event for _, _, events in batches for event in events]
        records = await store.append_in(conn, batches, read_here)
        read_model = SqlReadModel(conn, self._states_before(batches))
        for event, record in zip(new, records, strict=True):
            await read_model.process(event, record.position)
        return new, records

    def _committed(self, new: list[AnyEvent], records: list[store.Record]) -> None:
        """After the commit: the facts index, then the news and the relay (`on_commit`)."""
        if not records:
            return
        for event, record in zip(new, records, strict=True):
            try:
                self.index.process(event, record.position)
            except Exception:  # committed: the stream brings it again, the database answers
                log.exception("the facts index failed on event %s", event.event_id)
        self.on_commit(records)

    def _states_before(self, batches: Sequence[store.Batch]) -> dict[str, State | None]:
        """The streams this command loaded and appends to, as they were: append_in has just
        checked, under the write lock, that each is still at the version it was decided on, so
        the read model need not read them again while it holds that lock."""
        return {
            stream_id: fold(self._loaded[stream_id])
            for stream_id, expected, _ in batches
            if len(self._loaded.get(stream_id, ())) == expected > 0
        }
