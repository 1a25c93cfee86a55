"""Every key's facts in memory, so an auth check is a dictionary lookup, not a query.

The index is a view of the one fold of the key events (aitbc_contracts.keys): it keeps each
stream's state and, derived from it, the facts each secret of a key answers a check with.
Loaded by folding the log, it is then kept true by the events: this process's own appends as
soon as they commit (so a revocation it made holds for its very next check), and those of every
other keys process through the key event stream (aitbc_runtime.key_events.KeyEventReader).
Each stream's version makes an event given twice harmless. A hash the index does not know is
asked of the database, so a key another process has only just created is never refused; nor is
one of a stream another process told it has changed (`behind`, aitbc_keys.commits) before the
stream brings the change, so a key another process has just revoked is not vouched for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.events import AnyEvent, KeyKind
from aitbc_contracts.keys import AccountState, KeyState, State, evolve, expired
from aitbc_contracts.messages import KeyFacts
from aitbc_keys import store
from aitbc_keys.domain import fold_streams, secrets_of
from aitbc_runtime.process import finish, start_held

log = logging.getLogger("aitbc_keys.facts")

LOAD_BATCH = 5000  # events per query while loading


class FactsIndex:
    """The facts of every known secret, derived from the streams' states (a KeyEventView)."""

    def __init__(self) -> None:
        self.states: dict[str, State] = {}  # stream id (account or key id) -> its state
        self.secrets: dict[str, KeyFacts] = {}  # secret hash -> what a check of it answers
        self._keys_of: dict[str, list[str]] = {}  # account id -> its keys: a plan changes them
        # Streams committed elsewhere at a version this index has not reached yet: their keys'
        # facts are the database's to say until it has (stream id -> that version).
        self._behind: dict[str, int] = {}

    def facts(self, secret_hash: str, now: datetime) -> KeyFacts | None:
        """The facts for a hash, or None when this index cannot say (ask the database)."""
        facts = self.secrets.get(secret_hash)
        if facts is None:
            return None
        if expired(facts.secret_valid_until, now):
            return None  # a replaced secret whose grace has ended
        behind = self._behind
        if behind and (facts.key_id in behind or facts.account_id in behind):
            return None  # changed elsewhere a moment ago: not here yet
        return facts

    def kind_of(self, key_id: str) -> KeyKind | None:
        """A key's kind, if this index holds the key: a kind never changes, so the index need
        not be up to date to say it (None: load the key's stream)."""
        state = self.states.get(key_id)
        return state.kind if isinstance(state, KeyState) else None

    def behind(self, versions: Mapping[str, int]) -> None:
        """Another keys process committed these streams' `versions`: until this index has them,
        the facts of their keys are asked of the database. A stream it does not know is marked
        too: after a reset, a lagging key event stream may bring it back at an older version."""
        for stream_id, version in versions.items():
            state = self.states.get(stream_id)
            if state is None or state.version < version:
                self._behind[stream_id] = max(version, self._behind.get(stream_id, 0))

    def process(self, event: AnyEvent, position: int = 0) -> None:
        if self._behind.get(event.stream_id, event.version + 1) <= event.version:
            del self._behind[event.stream_id]  # applied below, in the same step
        before = self.states.get(event.stream_id)
        if before is not None and before.version >= event.version:
            return  # seen already: this process's own append, as the stream brings it back
        if before is None and event.version > 1:
            # A change to a stream this index does not hold (it was emptied, and the key event
            # stream has not brought the stream back yet): its keys' facts are the database's
            # until the index reaches this version, whatever older state the stream brings.
            self.behind({event.stream_id: event.version})
            return
        after = evolve(before, event)
        if after is None or after is before:
            return
        self.states[event.stream_id] = after
        if isinstance(after, KeyState):
            if not isinstance(before, KeyState):
                self._keys_of.setdefault(after.account_id, []).append(after.key_id)
            self._index_key(before if isinstance(before, KeyState) else None, after)
        else:
            for key_id in self._keys_of.get(after.account_id, ()):
                key = self.states[key_id]
                assert isinstance(key, KeyState)
                self._index_key(key, key)

    def _index_key(self, before: KeyState | None, after: KeyState) -> None:
        secrets = secrets_of(after)
        if before is not None:
            for secret_hash in secrets_of(before).keys() - secrets.keys():
                self.secrets.pop(secret_hash, None)
        account = self.states.get(after.account_id)
        if not isinstance(account, AccountState):
            return  # no plan to answer with: the database answers
        for secret_hash, valid_until in secrets.items():
            self.secrets[secret_hash] = KeyFacts(
                key_id=after.key_id,
                account_id=after.account_id,
                kind=after.kind,
                plan=account.plan,
                revoked=after.revoked,
                expires_at=after.expires_at,
                secret_valid_until=valid_until,
                rate_limit=after.rate_limit,
                data_plane=after.data_plane(account),
                scopes=after.scopes,
                allowed_ips=after.allowed_ips,
                shadow=after.shadow,
            )

    def reset(self) -> None:
        self.replace_with(FactsIndex())

    def replace_with(self, other: FactsIndex) -> None:
        self.states, self.secrets, self._keys_of = other.states, other.secrets, other._keys_of
        marks, self._behind = {**self._behind, **other._behind}, {}
        self.behind(marks)  # those the new states have not reached yet

    async def load(self, engine: AsyncEngine) -> None:
        """Fold the whole log into this (empty) index; the secrets of the final states only."""
        position = 0
        while batch := await store.events_after(engine, position, LOAD_BATCH):
            fold_streams(self.states, (event for _, event in batch))
            position = batch[-1][0]
        for state in self.states.values():
            if isinstance(state, KeyState):
                self._keys_of.setdefault(state.account_id, []).append(state.key_id)
                self._index_key(None, state)


class LiveFacts:
    """The index as the keys service keeps it: loaded from the log, then following the key
    event stream and this process's commits (a KeyEventView). After a reset (events may have
    passed unseen, or the stream contradicted what was read) the index is emptied at once, so
    checks ask the database rather than trust what it held, and loaded afresh; the events of
    the meantime are applied after the load. Of loads that overlap, the last one started wins."""

    def __init__(self, engine: AsyncEngine, index: FactsIndex) -> None:
        self.engine = engine
        self.index = index
        self._loads = 0  # loads started: only the newest may replace the index
        self._waiting: dict[int, list[tuple[AnyEvent, int]]] = {}  # per load under way
        self._tasks: set[asyncio.Task[None]] = set()

    def process(self, event: AnyEvent, position: int) -> None:
        self.index.process(event, position)
        for waiting in self._waiting.values():  # and again into each index being loaded
            waiting.append((event, position))

    def reset(self) -> None:
        self.index.reset()
        start_held(self._tasks, self.load())

    async def load(self) -> None:
        self._loads += 1
        load = self._loads
        waiting = self._waiting[load] = []
        try:
            fresh = FactsIndex()
            await fresh.load(self.engine)
            for event, position in waiting:
                fresh.process(event, position)
            if load == self._loads:
                self.index.replace_with(fresh)
                log.info(
                    "key facts index: %d streams, %d secrets",
                    len(fresh.states),
                    len(fresh.secrets),
                )
        except Exception:
            log.exception("could not load the key facts index; checks ask the database")
            if load == self._loads:  # else a newer load's index stands
                self.index.reset()
        finally:
            del self._waiting[load]

    async def stop(self, grace: float = 5.0) -> None:
        """Lets loads under way end (for up to `grace` seconds) rather than cancel them."""
        await finish(self._tasks, grace)
