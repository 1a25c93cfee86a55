"""The SQL read model: a view of the one fold of the key events (aitbc_contracts.keys).

Its rows are written from the state an event leads to, never from the event itself: what an
event does to a key is the fold's to say. The unit of work runs it inside the append's
transaction; `rebuild` refolds the whole log. The key checks the in-memory index cannot settle
read it, and so do the account queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aitbc_contracts.events import AnyEvent, decode_event
from aitbc_contracts.keys import AccountState, KeyState, State, evolve, expired, fold
from aitbc_contracts.messages import AccountView, KeyFacts
from aitbc_keys import store
from aitbc_keys.db import write_transaction
from aitbc_keys.domain import fold_streams, secrets_of
from aitbc_keys.schema import READ_MODELS, accounts, api_keys, events, key_secrets

# --- rows: how this view writes a state down ----------------------------------------------


# The columns a state fills as they are: each has the name of the state's attribute.
_ACCOUNT_COLUMNS = tuple(c.name for c in accounts.columns if c.name != "master_key_id")
_KEY_COLUMNS = tuple(c.name for c in api_keys.columns if c.name != "status")


def account_row(account: AccountState, master_key_id: str = "") -> dict[str, Any]:
    """`master_key_id` is the master key's to say (its creation fills it in)."""
    row = {column: getattr(account, column) for column in _ACCOUNT_COLUMNS}
    return row | {"master_key_id": master_key_id}


def key_row(key: KeyState) -> dict[str, Any]:
    """Expiry is left to the reader: it depends on when the row is read."""
    row = {column: getattr(key, column) for column in _KEY_COLUMNS}
    return row | {"status": "revoked" if key.revoked else "active"}


def secret_rows(key: KeyState, secrets: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The rows of a key's secrets (secrets_of), or of those of them named."""
    valid = secrets_of(key)
    return [
        {"secret_hash": secret_hash, "key_id": key.key_id, "valid_until": valid[secret_hash]}
        for secret_hash in (valid if secrets is None else secrets)
    ]


# --- the view, one event at a time --------------------------------------------------------


class SqlReadModel:
    """The read model as a view of the events appended in one write transaction (`conn`).

    An event's stream state before it comes from this transaction's own work, or from the
    stream's earlier events, read in the same transaction (a key stream holds a handful); a
    stream's first event has none, so creating an account or a key reads nothing. `known`:
    streams whose state before this transaction's events the caller holds already."""

    def __init__(self, conn: AsyncConnection, known: dict[str, State | None] | None = None) -> None:
        self.conn = conn
        self._states: dict[str, State | None] = dict(known or {})

    async def process(self, event: AnyEvent, position: int) -> None:
        before: State | None = None
        if event.stream_id in self._states:
            before = self._states[event.stream_id]
        elif event.version > 1:
            before = fold(await store.load_in(self.conn, event.stream_id, event.version))
        after = evolve(before, event)
        self._states[event.stream_id] = after
        if isinstance(after, AccountState):
            await self._write_account(before, after)
        elif isinstance(after, KeyState) and after is not before:
            await self._write_key(before if isinstance(before, KeyState) else None, after)

    async def _write_account(self, before: State | None, after: AccountState) -> None:
        if not isinstance(before, AccountState):
            await self.conn.execute(accounts.insert().values(account_row(after)))
        elif after is not before:  # the master key id is not the account stream's to say
            row = {column: getattr(after, column) for column in _ACCOUNT_COLUMNS}
            where = accounts.c.account_id == after.account_id
            await self.conn.execute(accounts.update().where(where).values(row))

    async def _write_key(self, before: KeyState | None, after: KeyState) -> None:
        if before is None:
            await self.conn.execute(api_keys.insert().values(key_row(after)))
            if after.kind == "master":
                where = accounts.c.account_id == after.account_id
                await self.conn.execute(
                    accounts.update().where(where).values(master_key_id=after.key_id)
                )
        else:
            where = api_keys.c.key_id == after.key_id
            await self.conn.execute(api_keys.update().where(where).values(key_row(after)))
        await self._write_secrets(before, after)

    async def _write_secrets(self, before: KeyState | None, after: KeyState) -> None:
        """Only what changed: a secret another key holds must collide (the store's
        ConcurrencyError), and a revocation must leave the secrets as they are."""
        old, new = secrets_of(before) if before else {}, secrets_of(after)
        for secret_hash in old.keys() - new.keys():
            where = key_secrets.c.secret_hash == secret_hash
            await self.conn.execute(key_secrets.delete().where(where))
        added = [secret_hash for secret_hash in new if secret_hash not in old]
        if added:
            await self.conn.execute(key_secrets.insert(), secret_rows(after, added))
        for secret_hash in new.keys() & old.keys():
            if old[secret_hash] != new[secret_hash]:
                where = key_secrets.c.secret_hash == secret_hash
                changed = key_secrets.update().where(where).values(valid_until=new[secret_hash])
                await self.conn.execute(changed)


# --- the view, from the whole log ---------------------------------------------------------


async def write_states(conn: AsyncConnection, states: Iterable[State]) -> None:
    """The rows of these states, in bulk, into empty read models."""
    states = list(states)
    keys = [s for s in states if isinstance(s, KeyState)]
    masters = {k.account_id: k.key_id for k in keys if k.kind == "master"}
    account_rows = [
        account_row(s, masters.get(s.account_id, "")) for s in states if isinstance(s, AccountState)
    ]
    secrets = [row for key in keys for row in secret_rows(key)]
    for table, rows in ((accounts, account_rows), (api_keys, [key_row(k) for k in keys]),
                        (key_secrets, secrets)):  # fmt: skip
        if rows:
            await conn.execute(table.insert(), rows)


async def rebuild(engine: AsyncEngine, batch: int = 1000) -> int:
    """Drop every read-model row and refold the whole log; returns the events folded. One
    write transaction: readers keep seeing the old rows until it commits."""
    states: dict[str, State] = {}
    count = last = 0
    async with write_transaction(engine) as conn:
        for table in READ_MODELS:
            await conn.execute(table.delete())
        while True:
            query = (
                sa.select(events.c.position, events.c.data)
                .where(events.c.position > last)
                .order_by(events.c.position)
                .limit(batch)
            )
            rows = (await conn.execute(query)).all()
            if not rows:
                break
            count += fold_streams(states, (decode_event(data) for _, data in rows))
            last = rows[-1].position
        await write_states(conn, states.values())
    return count


async def snapshot(conn: AsyncConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model row, sorted: to compare the live models with a rebuild."""
    result = {}
    for table in READ_MODELS:
        rows = (await conn.execute(sa.select(table))).all()
        result[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return result


# --- queries ---------------------------------------------------------------------------------


async def account_view(conn: AsyncConnection, account_id: str) -> AccountView | None:
    row = (
        await conn.execute(sa.select(accounts).where(accounts.c.account_id == account_id))
    ).first()
    if row is None:
        return None
    return AccountView(
        account_id=row.account_id,
        name=row.name,
        plan=row.plan,
        master_key_id=row.master_key_id,
        created_at=row.created_at,
        master_key_data_plane=row.master_key_data_plane,
    )


async def live_keys(conn: AsyncConnection, account_id: str, now: datetime) -> int:
    """How many of the account's keys are neither revoked nor expired at `now`."""
    query = sa.select(sa.func.count()).where(
        api_keys.c.account_id == account_id,
        api_keys.c.status == "active",
        sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now),
    )
    return int((await conn.execute(query)).scalar_one())


_check_query = (
    sa.select(
        key_secrets.c.secret_hash,
        key_secrets.c.valid_until,
        api_keys,
        accounts.c.plan,
        accounts.c.master_key_data_plane,
    )
    .join(api_keys, api_keys.c.key_id == key_secrets.c.key_id)
    .join(accounts, accounts.c.account_id == api_keys.c.account_id)
    .where(key_secrets.c.secret_hash.in_(sa.bindparam("hashes", expanding=True)))
)
_CHECK_CHUNK = 500  # bound parameters per query: under every database's limit


async def key_facts(
    conn: AsyncConnection, secret_hashes: Sequence[str], now: datetime
) -> dict[str, KeyFacts]:
    """What the edge needs to admit each key; a hash unknown or out of grace is left out."""
    found = {}
    unique = sorted(set(secret_hashes))
    for start in range(0, len(unique), _CHECK_CHUNK):
        chunk = unique[start : start + _CHECK_CHUNK]
        for row in await conn.execute(_check_query, {"hashes": chunk}):
            if expired(row.valid_until, now):
                continue
            found[row.secret_hash] = KeyFacts(
                key_id=row.key_id,
                account_id=row.account_id,
                kind=row.kind,
                plan=row.plan,
                revoked=row.status == "revoked",
                expires_at=row.expires_at,
                secret_valid_until=row.valid_until,
                rate_limit=row.rate_limit,
                data_plane=row.kind != "master" or row.master_key_data_plane,
                scopes=row.scopes,
                allowed_ips=row.allowed_ips,
                shadow=row.shadow,
            )
    return found
