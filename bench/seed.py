"""Accounts and keys for the benchmark, written into the keys database before the keys service
starts, through the keys service's own event store (`store.append_in`: the same events, the same
hash chain, the same positions); the relay then publishes them like any other events.

Creating 100,000 accounts one command at a time takes about 20 minutes here (the write path does
about 90 commands/s; see the results), so the read models are filled in bulk instead of one
`projections.apply` per event: three executemany inserts with the rows `projections.apply`
would write for AccountCreated and KeyCreated. The harness then checks a sample through the
running keys service (CheckKeys, GetAccount), so a drift between the two fails loudly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aitbc_contracts import messages as m
from aitbc_contracts.events import AccountCreated, AnyEvent, KeyCreated
from aitbc_contracts.keyformat import generate_key, hash_key, hint, new_account_id, new_key_id
from aitbc_keys import domain, projections, store
from aitbc_keys.db import create_engine, migrate, write_transaction
from aitbc_keys.schema import accounts, api_keys, key_secrets

CHUNK = 5_000  # accounts per append_in: one transaction each


@dataclass
class Account:
    account_id: str
    master_key: str
    master_key_id: str
    keys: list[tuple[str, str]] = field(default_factory=list)  # (key id, plaintext)


@dataclass
class Seeded:
    bulk: list[Account]  # one master key each: auth checks, memory, decisions
    load: list[Account]  # several keys each: the HTTP scenarios
    revoke: Account  # keys to revoke, one by one
    events: int  # events appended: what the relay must publish

    def load_keys(self) -> list[tuple[str, str]]:
        """(account id, key) of every standard key of the load accounts."""
        return [(a.account_id, key) for a in self.load for _, key in a.keys]


def _new_id() -> str:
    return uuid.uuid4().hex


@contextmanager
def _collecting(into: list[AnyEvent]) -> Iterator[None]:
    """append_in with the per-event projection replaced by a list: filled in bulk after."""
    original = projections.apply

    async def collect(_conn: Any, event: AnyEvent) -> None:
        into.append(event)

    projections.apply = collect  # type: ignore[assignment]
    try:
        yield
    finally:
        projections.apply = original  # type: ignore[assignment]


def _read_model_rows(
    new: list[AnyEvent],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows projections.apply writes for these events (accounts, api_keys, key_secrets)."""
    account_rows: dict[str, dict[str, Any]] = {}
    key_rows, secret_rows = [], []
    for event in new:
        match event:
            case AccountCreated():
                account_rows[event.account_id] = {
                    "account_id": event.account_id,
                    "name": event.name,
                    "plan": event.plan,
                    "master_key_id": "",
                    "created_at": event.occurred_at,
                }
            case KeyCreated():
                key_rows.append(
                    {
                        "key_id": event.key_id,
                        "account_id": event.account_id,
                        "name": event.name,
                        "kind": event.kind,
                        "hint": event.hint,
                        "status": "active",
                        "created_at": event.occurred_at,
                        "expires_at": event.expires_at,
                        "rate_limit": event.rate_limit,
                    }
                )
                secret_rows.append(
                    {"secret_hash": event.secret_hash, "key_id": event.key_id, "valid_until": None}
                )
                if event.kind == "master":
                    account_rows[event.account_id]["master_key_id"] = event.key_id
            case _:
                raise ValueError(f"the seeder writes no {type(event).__name__}")
    return list(account_rows.values()), key_rows, secret_rows


def _account_events(plan: str, now: datetime) -> tuple[Account, list[store.Batch]]:
    master = generate_key()
    command = m.CreateAccount(
        master_key_hash=hash_key(master), master_key_hint=hint(master), plan=plan, name="bench"
    )
    account_id, master_id = new_account_id(), new_key_id()
    new = domain.create_account(command, now, account_id, master_id, _new_id)
    batches: list[store.Batch] = [(account_id, 0, new[:1]), (master_id, 0, new[1:])]
    return Account(account_id, master, master_id), batches


def _key_events(account: Account, count: int, now: datetime) -> list[store.Batch]:
    state = domain.Account(account.account_id, "bench", "enterprise", now, 1)
    batches: list[store.Batch] = []
    for i in range(count):
        key, key_id = generate_key(), new_key_id()
        command = m.CreateKey(
            account_id=account.account_id,
            name=f"bench-{i}",
            secret_hash=hash_key(key),
            hint=hint(key),
        )
        batches.append((key_id, 0, domain.create_key(state, command, now, key_id, _new_id)))
        account.keys.append((key_id, key))
    return batches


async def seed(
    database: Path, bulk: int, load_accounts: int, keys_per_account: int, revoke_keys: int
) -> Seeded:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    now = datetime.now(UTC)
    count = 0
    try:
        await migrate(engine)

        async def append(batches: list[store.Batch]) -> None:
            nonlocal count
            new: list[AnyEvent] = []
            async with write_transaction(engine) as conn:
                with _collecting(new):
                    await store.append_in(conn, batches)
                for table, rows in zip(
                    (accounts, api_keys, key_secrets), _read_model_rows(new), strict=True
                ):
                    if rows:
                        await conn.execute(table.insert(), rows)
            count += len(new)

        load = []
        for _ in range(load_accounts):
            account, batches = _account_events("enterprise", now)
            batches += _key_events(account, keys_per_account, now)
            load.append(account)
            await append(batches)
        revoke, batches = _account_events("enterprise", now)
        await append(batches + _key_events(revoke, revoke_keys, now))
        seeded: list[Account] = []
        for start in range(0, bulk, CHUNK):
            chunk: list[store.Batch] = []
            for _ in range(min(CHUNK, bulk - start)):
                account, batches = _account_events("enterprise", now)
                seeded.append(account)
                chunk += batches
            await append(chunk)
    finally:
        await engine.dispose()
    return Seeded(seeded, load, revoke, count)
