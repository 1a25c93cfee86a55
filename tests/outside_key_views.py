"""Adapters for the views of the key events outside the keys service, for the one table of
histories (tests/key_views.py, checked in tests/integration/keys/test_views.py): the edge's
auth cache with its invalidation, the usage service's plan book and the CLI's audit view."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aitbc_cli.history import key_at
from aitbc_contracts import messages as m
from aitbc_contracts.events import AccountCreated, AnyEvent
from aitbc_contracts.keys import secret_valid
from aitbc_gate.auth_cache import AuthCache
from aitbc_gate.cache_invalidation import CacheInvalidation
from aitbc_usage.plans import PlanBook
from tests.key_histories import T0
from tests.key_views import (
    NOT_KEPT,
    Delivery,
    KeyRecord,
    expected_facts,
    secret_hashes,
    states_of,
)

EARLY = T0 - timedelta(days=1)  # before every grace ends: the facts as the keys service gives them


class EdgeCacheView:
    """A busy edge: after each event the stream brings, every key is in use again, so each one
    the invalidation evicted is asked of the keys service (the fold of the log so far) and cached
    anew. What the cache holds at the end must be what the fold says; a stale entry that an
    event should have evicted is a disagreement. A key the cache does not hold would be asked
    about: NOT_KEPT."""

    name = "edge auth cache"

    def __init__(self, _engine: Any = None) -> None:
        self.cache = AuthCache(size=10_000, ttl=3600, negative_size=100, negative_ttl=60)
        self.view = CacheInvalidation(self.cache)

    async def feed(self, delivery: Delivery) -> None:
        seen: Delivery = []
        for event, position in delivery:
            self.view.process(event, position)
            seen.append((event, position))
            states = states_of(seen)
            for secret_hash in sorted({h for e, _ in seen for h in secret_hashes(e)}):
                digest = bytes.fromhex(secret_hash)
                if self.cache.get(digest) is None:
                    facts = expected_facts(states, secret_hash, EARLY)
                    if facts is not None:
                        self.cache.put(digest, facts, self.cache.generation)

    async def facts(self, secret_hash: str, now: datetime) -> m.KeyFacts | str | None:
        cached = self.cache.get(bytes.fromhex(secret_hash))
        if cached is None:
            return NOT_KEPT
        if cached.secret_valid_until is not None and not secret_valid(
            cached.secret_valid_until, now
        ):
            return None  # a replaced secret past its grace: the edge refuses it
        return cached

    async def plan(self, account_id: str) -> str | None:
        return NOT_KEPT

    async def record(self, key_id: str) -> KeyRecord | str | None:
        return NOT_KEPT


class PlanBookView:
    """The usage service's plan book. It follows the stream from now, so for an account whose
    creation it never saw it keeps the last plan it heard, which a fold of a log without that
    creation cannot say: it is asked only about accounts whose creation it was given."""

    name = "usage plan book"

    def __init__(self, _engine: Any = None) -> None:
        self.book = PlanBook(_no_lookup)
        self.created: set[str] = set()

    async def feed(self, delivery: Delivery) -> None:
        for event, position in delivery:
            self.book.process(event, position)
            if isinstance(event, AccountCreated):
                self.created.add(event.account_id)

    async def facts(self, secret_hash: str, now: datetime) -> m.KeyFacts | str | None:
        return NOT_KEPT

    async def plan(self, account_id: str) -> str | None:
        return self.book.known(account_id) if account_id in self.created else NOT_KEPT

    async def record(self, key_id: str) -> KeyRecord | str | None:
        return NOT_KEPT


class CliHistoryView:
    """`aitbc keys show`: the stream holds each position once; the CLI reads a key's events and
    its account's, and folds them as of a time (here: after everything)."""

    name = "CLI key history"

    def __init__(self, _engine: Any = None) -> None:
        self.log: dict[int, AnyEvent] = {}

    async def feed(self, delivery: Delivery) -> None:
        for event, position in delivery:
            self.log.setdefault(position, event)

    async def facts(self, secret_hash: str, now: datetime) -> m.KeyFacts | str | None:
        return NOT_KEPT

    async def plan(self, account_id: str) -> str | None:
        return NOT_KEPT

    async def record(self, key_id: str) -> KeyRecord | str | None:
        events = [self.log[p] for p in sorted(self.log)]
        mine = [e for e in events if e.stream_id == key_id]
        if not mine:
            return None
        account_id = mine[0].account_id
        history = [e for e in events if e.stream_id == account_id] + mine
        shown = key_at(history, datetime.max.replace(tzinfo=T0.tzinfo))
        if shown is None:
            return None
        key = shown.key
        return KeyRecord(
            key.key_id, key.account_id, key.name, key.kind, key.hint, key.revoked, key.created_at,
            key.expires_at, key.revoked_at, key.regenerated_at, key.rate_limit,
        )  # fmt: skip


async def _no_lookup(account_id: str) -> str | None:
    raise AssertionError("the table asks only what the book was given")
