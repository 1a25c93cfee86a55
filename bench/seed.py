"""Accounts and keys for the benchmark, written into the keys database before the keys service
starts, through the keys service's own event store (`store.append_in`: the same events, the same
hash chain, the same positions); the relay then publishes them like any other events.

Creating 100,000 accounts one command at a time takes about 20 minutes here (the write path does
about 90 commands/s; see the results), so the read models are filled in bulk instead of one
view update per event: the events are folded with the keys service's own fold
(`domain.fold_streams`) and the resulting states written in bulk (`projections.write_states`,
which a rebuild uses too). The harness then checks a sample through the running keys service
(CheckKeys, GetAccount), so a drift between the two fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint, new_account_id, new_key_id
from aitbc_contracts.keys import AccountState, State
from aitbc_keys import domain, projections, store
from aitbc_keys.db import create_engine, migrate, write_transaction
from aitbc_keys.service_layer.handlers import new_event_id

CHUNK = 5_000  # accounts per append_in: one transaction each
# Scenario R's keys: what a key limited to reading jobs from this machine carries, so the edge
# checks both restrictions on every request (and admits it: wrk connects from 127.0.0.1).
RESTRICTIONS = {"scopes": ("jobs:read",), "allowed_ips": ("127.0.0.0/8", "::1/128")}


@dataclass
class Account:
    account_id: str
    master_key: str
    master_key_id: str
    keys: list[tuple[str, str]] = field(default_factory=list)  # (key id, plaintext)
    restricted: list[tuple[str, str]] = field(default_factory=list)  # ... with RESTRICTIONS


@dataclass
class Seeded:
    bulk: list[Account]  # one master key each: auth checks, memory, decisions
    load: list[Account]  # several keys each: the HTTP scenarios
    revoke: Account  # keys to revoke, one by one
    events: int  # events appended: what the relay must publish
    windowed: list[Account] = field(default_factory=list)  # on pro: a second and a day too

    def load_keys(self) -> list[tuple[str, str]]:
        """(account id, key) of every standard key of the load accounts."""
        return [(a.account_id, key) for a in self.load for _, key in a.keys]

    def restricted_keys(self) -> list[tuple[str, str]]:
        """(account id, key) of the load accounts' restricted keys (scenario R)."""
        return [(a.account_id, key) for a in self.load for _, key in a.restricted]


def _account_events(plan: str, now: datetime) -> tuple[Account, list[store.Batch]]:
    master = generate_key()
    command = m.CreateAccount(
        master_key_hash=hash_key(master), master_key_hint=hint(master), plan=plan, name="bench"
    )
    account_id, master_id = new_account_id(), new_key_id()
    new = domain.create_account(command, now, account_id, master_id, new_event_id)
    batches: list[store.Batch] = [(account_id, 0, new[:1]), (master_id, 0, new[1:])]
    return Account(account_id, master, master_id), batches


def _key_events(
    account: Account, count: int, now: datetime, restricted: bool = False
) -> list[store.Batch]:
    """`count` standard keys of the account; `restricted`: each with RESTRICTIONS."""
    state = AccountState(account.account_id, "bench", "enterprise", now, 1)
    batches: list[store.Batch] = []
    for i in range(count):
        key, key_id = generate_key(), new_key_id()
        command = m.CreateKey(
            account_id=account.account_id,
            name=f"bench-{i}",
            secret_hash=hash_key(key),
            hint=hint(key),
            **(RESTRICTIONS if restricted else {}),  # type: ignore[arg-type]
        )
        batches.append((key_id, 0, domain.create_key(state, command, now, key_id, new_event_id)))
        (account.restricted if restricted else account.keys).append((key_id, key))
    return batches


async def seed(
    database_url: str,
    bulk: int,
    load_accounts: int,
    keys_per_account: int,
    revoke_keys: int,
    windowed: int = 0,
) -> Seeded:
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    count = 0
    try:
        await migrate(engine)

        async def append(batches: list[store.Batch]) -> None:
            nonlocal count
            states: dict[str, State] = {}
            async with write_transaction(engine) as conn:
                await store.append_in(conn, batches)
                count += domain.fold_streams(states, (e for _, _, new in batches for e in new))
                await projections.write_states(conn, states.values())

        load = []
        for _ in range(load_accounts):
            account, batches = _account_events("enterprise", now)
            batches += _key_events(account, keys_per_account, now)
            batches += _key_events(account, keys_per_account, now, restricted=True)
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
        on_pro: list[Account] = []
        for start in range(0, windowed, CHUNK):
            chunk = []
            for _ in range(min(CHUNK, windowed - start)):
                account, batches = _account_events("pro", now)
                on_pro.append(account)
                chunk += batches
            await append(chunk)
    finally:
        await engine.dispose()
    return Seeded(seeded, load, revoke, count, on_pro)
