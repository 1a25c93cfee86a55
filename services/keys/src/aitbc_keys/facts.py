"""Every key's facts in memory, so an auth check is a dictionary lookup, not a query.

Loaded once from the read models, then kept true by the events: this process's own appends
are applied as soon as they commit (so a revocation it made holds for its very next check),
and the key event stream brings those of every other keys process. Each stream's version
makes applying an event twice harmless. A hash the index does not know is asked of the
database, so a key another process has only just created is never refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

import msgspec
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
from aitbc_contracts.messages import KeyFacts
from aitbc_keys.schema import accounts, api_keys, events, key_secrets
from aitbc_runtime.process import finish, start_held

log = logging.getLogger("aitbc_keys.facts")


@dataclass(slots=True)
class _Key:
    account_id: str
    kind: str
    revoked: bool
    expires_at: datetime | None
    rate_limit: int | None


class FactsIndex:
    def __init__(self) -> None:
        self.keys: dict[str, _Key] = {}
        self.secrets: dict[str, tuple[str, datetime | None]] = {}  # hash -> key id, valid until
        self.plans: dict[str, str] = {}
        self.versions: dict[str, int] = {}

    async def load(self, conn: AsyncConnection) -> None:
        for account_id, plan in await conn.execute(
            sa.select(accounts.c.account_id, accounts.c.plan)
        ):
            self.plans[account_id] = plan
        query = sa.select(
            api_keys.c.key_id,
            api_keys.c.account_id,
            api_keys.c.kind,
            api_keys.c.status,
            api_keys.c.expires_at,
            api_keys.c.rate_limit,
        )
        for row in await conn.execute(query):
            self.keys[row.key_id] = _Key(
                row.account_id, row.kind, row.status == "revoked", row.expires_at, row.rate_limit
            )
        for row in await conn.execute(sa.select(key_secrets)):
            self.secrets[row.secret_hash] = (row.key_id, row.valid_until)
        versions = sa.select(events.c.stream_id, sa.func.max(events.c.version)).group_by(
            events.c.stream_id
        )
        for stream_id, version in await conn.execute(versions):
            self.versions[stream_id] = max(self.versions.get(stream_id, 0), int(version))

    def apply_data(self, data: bytes) -> None:
        """One message of the key event stream."""
        with contextlib.suppress(msgspec.MsgspecError):  # only the relay publishes there
            self.apply(decode_event(data))

    def apply(self, event: AnyEvent) -> None:
        if self.versions.get(event.stream_id, 0) >= event.version:
            return
        self.versions[event.stream_id] = event.version
        match event:
            case AccountCreated() | PlanChanged():
                self.plans[event.account_id] = event.plan
            case KeyCreated():
                self.keys[event.key_id] = _Key(
                    event.account_id, event.kind, False, event.expires_at, event.rate_limit
                )
                self.secrets[event.secret_hash] = (event.key_id, None)
            case KeyRevoked():
                key = self.keys.get(event.key_id)
                if key is not None:
                    key.revoked = True
            case KeyRegenerated():
                self.secrets[event.secret_hash] = (event.key_id, None)
                if event.previous_valid_until is None:
                    self.secrets.pop(event.previous_hash, None)
                else:
                    self.secrets[event.previous_hash] = (event.key_id, event.previous_valid_until)

    def facts(self, secret_hash: str, now: datetime) -> KeyFacts | None:
        """The facts for a hash, or None when this index cannot say (ask the database)."""
        secret = self.secrets.get(secret_hash)
        if secret is None:
            return None
        key_id, valid_until = secret
        key = self.keys.get(key_id)
        plan = self.plans.get(key.account_id) if key is not None else None
        if key is None or plan is None or (valid_until is not None and valid_until <= now):
            return None
        return KeyFacts(
            key_id=key_id,
            account_id=key.account_id,
            kind=key.kind,  # type: ignore[arg-type]
            plan=plan,  # type: ignore[arg-type]
            revoked=key.revoked,
            expires_at=key.expires_at,
            secret_valid_until=valid_until,
            rate_limit=key.rate_limit,
        )

    def replace_with(self, other: FactsIndex) -> None:
        self.keys, self.secrets = other.keys, other.secrets
        self.plans, self.versions = other.plans, other.versions


class LiveIndex:
    """Loads the index, then follows the stream; events that arrive during a load wait for it."""

    def __init__(self, engine: AsyncEngine, index: FactsIndex) -> None:
        self.engine = engine
        self.index = index
        self._waiting: list[bytes] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def on_data(self, data: bytes) -> None:
        if self._waiting is not None:
            self._waiting.append(data)
        else:
            self.index.apply_data(data)

    async def load(self) -> None:
        self._waiting = []
        try:
            fresh = FactsIndex()
            async with self.engine.connect() as conn:
                await fresh.load(conn)
            for data in self._waiting:
                fresh.apply_data(data)
            self.index.replace_with(fresh)
            log.info("key facts index: %d keys, %d secrets", len(fresh.keys), len(fresh.secrets))
        except Exception:
            log.exception("could not load the key facts index; checks ask the database")
            self.index.replace_with(FactsIndex())
        finally:
            self._waiting = None

    def reload_soon(self) -> None:
        """After a reconnect events may have passed unseen: load afresh."""
        start_held(self._tasks, self.load())

    async def stop(self, grace: float = 5.0) -> None:
        """Lets loads under way end (for up to `grace` seconds) rather than cancel them."""
        await finish(self._tasks, grace)
