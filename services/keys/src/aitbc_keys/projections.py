"""Read models derived from the events, updated in the append's transaction, rebuildable."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aitbc_contracts.events import (
    AccountCreated,
    AnyEvent,
    KeyCreated,
    KeyRegenerated,
    KeyRevoked,
    PlanChanged,
    decode_event,
)
from aitbc_contracts.messages import AccountView, KeyFacts, KeyView
from aitbc_keys.db import write_transaction
from aitbc_keys.schema import READ_MODELS, accounts, api_keys, events, key_secrets


async def apply(conn: AsyncConnection, event: AnyEvent) -> None:
    """Bring the read models up to date with one event (called inside the append)."""
    match event:
        case AccountCreated():
            # The master key follows in the same append; it fills in master_key_id.
            await conn.execute(
                accounts.insert().values(
                    account_id=event.account_id,
                    name=event.name,
                    plan=event.plan,
                    master_key_id="",
                    created_at=event.occurred_at,
                )
            )
        case PlanChanged():
            await conn.execute(
                accounts.update()
                .where(accounts.c.account_id == event.account_id)
                .values(plan=event.plan)
            )
        case KeyCreated():
            await conn.execute(
                api_keys.insert().values(
                    key_id=event.key_id,
                    account_id=event.account_id,
                    name=event.name,
                    kind=event.kind,
                    hint=event.hint,
                    status="active",
                    created_at=event.occurred_at,
                    expires_at=event.expires_at,
                    rate_limit=event.rate_limit,
                )
            )
            await conn.execute(
                key_secrets.insert().values(
                    secret_hash=event.secret_hash, key_id=event.key_id, valid_until=None
                )
            )
            if event.kind == "master":
                await conn.execute(
                    accounts.update()
                    .where(accounts.c.account_id == event.account_id)
                    .values(master_key_id=event.key_id)
                )
        case KeyRevoked():
            # Secrets stay: a check on a revoked key must say "revoked", not "unknown".
            await conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == event.key_id)
                .values(status="revoked", revoked_at=event.occurred_at)
            )
        case KeyRegenerated():
            old = key_secrets.c.secret_hash == event.previous_hash
            if event.previous_valid_until is None:
                await conn.execute(key_secrets.delete().where(old))
            else:
                await conn.execute(
                    key_secrets.update().where(old).values(valid_until=event.previous_valid_until)
                )
            await conn.execute(
                key_secrets.insert().values(
                    secret_hash=event.secret_hash, key_id=event.key_id, valid_until=None
                )
            )
            await conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == event.key_id)
                .values(hint=event.hint, regenerated_at=event.occurred_at)
            )


async def rebuild(engine: AsyncEngine, batch: int = 1000) -> int:
    """Drop every read-model row and refold the whole log; returns the events applied."""
    count = 0
    async with write_transaction(engine) as conn:
        for table in READ_MODELS:
            await conn.execute(table.delete())
        last = 0
        while True:
            rows = (
                await conn.execute(
                    sa.select(events.c.position, events.c.data)
                    .where(events.c.position > last)
                    .order_by(events.c.position)
                    .limit(batch)
                )
            ).all()
            if not rows:
                break
            for position, data in rows:
                await apply(conn, decode_event(data))
                last = position
                count += 1
    return count


async def snapshot(conn: AsyncConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model row, sorted: to compare the live models with a rebuild."""
    result = {}
    for table in READ_MODELS:
        rows = (await conn.execute(sa.select(table))).all()
        result[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return result


# --- queries ---------------------------------------------------------------------------------


def _key_view(row: sa.Row[Any], now: datetime) -> KeyView:
    status = row.status
    if status == "active" and row.expires_at is not None and row.expires_at <= now:
        status = "expired"
    return KeyView(
        key_id=row.key_id,
        account_id=row.account_id,
        name=row.name,
        kind=row.kind,
        hint=row.hint,
        status=status,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        regenerated_at=row.regenerated_at,
        rate_limit=row.rate_limit,
    )


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
    )


async def key_view(conn: AsyncConnection, key_id: str, now: datetime) -> KeyView | None:
    row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))).first()
    return None if row is None else _key_view(row, now)


async def key_views(conn: AsyncConnection, account_id: str, now: datetime) -> list[KeyView]:
    rows = (
        await conn.execute(
            sa.select(api_keys)
            .where(api_keys.c.account_id == account_id)
            .order_by(api_keys.c.created_at, api_keys.c.key_id)
        )
    ).all()
    return [_key_view(row, now) for row in rows]


_check_query = (
    sa.select(key_secrets.c.secret_hash, key_secrets.c.valid_until, api_keys, accounts.c.plan)
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
            if row.valid_until is not None and row.valid_until <= now:
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
            )
    return found
