"""What the one fold (aitbc_contracts.keys) says of histories of key events (those of
tests/key_histories.py): the table every view of the key events is checked against
(tests/integration/keys/test_views.py).

A view joins the table through an adapter (`ViewAdapter`): given what the stream delivered,
it says what it thinks of a secret, an account or a key at a time, or `NOT_KEPT` where that
view keeps no such thing. Views of other packages (the edge's auth cache, the usage plan book,
the CLI's history) can be added with an adapter of their own.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from aitbc_contracts import messages as m
from aitbc_contracts.events import AnyEvent
from aitbc_contracts.keys import AccountState, KeyState, State, fold

NOT_KEPT: Final = "not kept"  # what a view answers about what it keeps nothing of

# What the stream delivered, in order: (event, its position); a redelivery repeats a position.
Delivery = list[tuple[AnyEvent, int]]


@dataclass(frozen=True)
class KeyRecord:
    """What a key's record shows, apart from the status, which depends on the time."""

    key_id: str
    account_id: str
    name: str
    kind: str
    hint: str
    revoked: bool
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    regenerated_at: datetime | None
    rate_limit: int | None


class ViewAdapter(Protocol):
    name: str

    async def feed(self, delivery: Delivery) -> None: ...

    async def facts(self, secret_hash: str, now: datetime) -> m.KeyFacts | str | None: ...

    async def plan(self, account_id: str) -> str | None: ...

    async def record(self, key_id: str) -> KeyRecord | str | None: ...


# --- what the fold says --------------------------------------------------------------------


def states_of(delivery: Delivery) -> dict[str, State | None]:
    """Each stream's fold over the log: every position once, in order."""
    log = dict(sorted({position: event for event, position in delivery}.items()))
    streams: dict[str, list[AnyEvent]] = {}
    for event in log.values():
        streams.setdefault(event.stream_id, []).append(event)
    return {stream_id: fold(events) for stream_id, events in streams.items()}


def expected_facts(states: dict[str, State | None], secret_hash: str, now: datetime) -> Any:
    for key in states.values():
        if not isinstance(key, KeyState):
            continue
        until = key.secret_valid_until(secret_hash, now)
        if until is False:
            continue
        account = states.get(key.account_id)
        if not isinstance(account, AccountState):
            return None  # no plan: no check can admit it
        return m.KeyFacts(
            key_id=key.key_id,
            account_id=key.account_id,
            kind=key.kind,
            plan=account.plan,
            revoked=key.revoked,
            expires_at=key.expires_at,
            secret_valid_until=until if isinstance(until, datetime) else None,
            rate_limit=key.rate_limit,
            data_plane=key.data_plane(account),
        )
    return None


def expected_plan(states: dict[str, State | None], account_id: str) -> str | None:
    account = states.get(account_id)
    return account.plan if isinstance(account, AccountState) else None


def expected_record(states: dict[str, State | None], key_id: str) -> KeyRecord | None:
    key = states.get(key_id)
    if not isinstance(key, KeyState):
        return None
    return KeyRecord(
        key.key_id, key.account_id, key.name, key.kind, key.hint, key.revoked, key.created_at,
        key.expires_at, key.revoked_at, key.regenerated_at, key.rate_limit,
    )  # fmt: skip


async def disagreements(view: ViewAdapter, delivery: Delivery, times: list[datetime]) -> list[str]:
    """Every question on which `view` and the fold differ, after `delivery`."""
    states = states_of(delivery)
    accounts = {e.account_id for e, _ in delivery} | {e.stream_id for e, _ in delivery}
    keys = {e.stream_id for e, _ in delivery}
    hashes = sorted({h for e, _ in delivery for h in secret_hashes(e)})
    found = []
    for account_id in sorted(accounts):
        said, want = await view.plan(account_id), expected_plan(states, account_id)
        if said != NOT_KEPT and said != want:
            found.append(f"{view.name}: plan of {account_id}: {said!r}, the fold: {want!r}")
    for key_id in sorted(keys):
        record, wanted = await view.record(key_id), expected_record(states, key_id)
        if record != NOT_KEPT and record != wanted:
            found.append(f"{view.name}: record of {key_id}: {record!r}, the fold: {wanted!r}")
    for now, secret_hash in itertools.product(times, hashes):
        facts, want_facts = (
            await view.facts(secret_hash, now),
            expected_facts(states, secret_hash, now),
        )
        if facts != NOT_KEPT and facts != want_facts:
            found.append(
                f"{view.name}: {secret_hash[:4]} at {now}: {facts!r}, the fold: {want_facts!r}"
            )
    return found


def secret_hashes(event: AnyEvent) -> list[str]:
    """The secrets an event names: the one it gives a key, and the one it replaces."""
    return [
        h for h in (getattr(event, "secret_hash", None), getattr(event, "previous_hash", None)) if h
    ]
