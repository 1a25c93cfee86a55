"""Usage aggregates in SQL: counts and the stream position move together, in one transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aitbc_contracts.sql import migrate, write_transaction
from aitbc_contracts.usage import MinuteUsage, UsageEvent

MIGRATIONS = Path(__file__).parent / "migrations"
COUNTS = ("requests", "admitted", "limited", "status_2xx", "status_3xx", "status_4xx", "status_5xx")

metadata = sa.MetaData()
usage_minutes = sa.Table(
    "usage_minutes",
    metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("minute", sa.BigInteger, primary_key=True),
    *(sa.Column(name, sa.BigInteger, nullable=False) for name in COUNTS),
)
key_last_used = sa.Table(
    "key_last_used",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
)
stream_cursors = sa.Table(
    "stream_cursors",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("last_sequence", sa.BigInteger, nullable=False),
)


async def prepare(engine: AsyncEngine) -> None:
    await migrate(engine, MIGRATIONS)


@dataclass
class Tally:
    """What a batch of usage events adds, keyed by (account, key, minute)."""

    counts: dict[tuple[str, str, int], dict[str, int]] = field(default_factory=dict)
    last_used: dict[str, tuple[str, datetime]] = field(default_factory=dict)

    def add(self, event: UsageEvent) -> None:
        minute = int(event.at.timestamp()) // 60 * 60
        row = self.counts.setdefault(
            (event.account_id, event.key_id, minute), dict.fromkeys(COUNTS, 0)
        )
        row["requests"] += 1
        if event.decision == "limited":
            row["limited"] += 1
        else:
            row["admitted"] += 1
        status_class = f"status_{event.status // 100}xx"
        if status_class in row:
            row[status_class] += 1
        seen = self.last_used.get(event.key_id)
        if seen is None or seen[1] < event.at:
            self.last_used[event.key_id] = (event.account_id, event.at)


def _insert(conn: AsyncConnection, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def cursor(conn: AsyncConnection, name: str) -> int:
    value = await conn.scalar(
        sa.select(stream_cursors.c.last_sequence).where(stream_cursors.c.name == name)
    )
    return int(value or 0)


async def commit_batch(
    engine: AsyncEngine, name: str, events: Iterable[tuple[int, UsageEvent | None]]
) -> int:
    """Adds the events after the stored position, and stores the new position; returns it.

    Events at or before the stored position were counted before a crash or redelivery:
    they are skipped, so nothing is counted twice.
    """
    async with write_transaction(engine) as conn:
        position = start = await cursor(conn, name)
        tally = Tally()
        for sequence, event in events:
            if sequence <= start:
                continue
            position = max(position, sequence)
            if event is not None:  # an undecodable message still moves the position on
                tally.add(event)
        if position == start:
            return position
        if tally.counts:
            statement = _insert(conn, usage_minutes)
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["account_id", "key_id", "minute"],
                    set_={c: getattr(usage_minutes.c, c) + statement.excluded[c] for c in COUNTS},
                ),
                [
                    {"account_id": a, "key_id": k, "minute": minute, **row}
                    for (a, k, minute), row in tally.counts.items()
                ],
            )
        if tally.last_used:
            statement = _insert(conn, key_last_used)
            newest = sa.func.greatest if conn.dialect.name == "postgresql" else sa.func.max
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["key_id"],
                    set_={
                        "last_used_at": newest(
                            statement.excluded.last_used_at, key_last_used.c.last_used_at
                        )
                    },
                ),
                [
                    {"key_id": key, "account_id": account, "last_used_at": at}
                    for key, (account, at) in tally.last_used.items()
                ],
            )
        statement = _insert(conn, stream_cursors)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["name"], set_={"last_sequence": statement.excluded.last_sequence}
            ),
            {"name": name, "last_sequence": position},
        )
        return position


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def series(
    engine: AsyncEngine, account_id: str, start: datetime, end: datetime, key_id: str | None
) -> list[MinuteUsage]:
    """Per-minute counts in [start, end), for the account or one of its keys."""
    columns = [sa.func.sum(getattr(usage_minutes.c, c)).label(c) for c in COUNTS]
    query = (
        sa.select(usage_minutes.c.minute, *columns)
        .where(
            usage_minutes.c.account_id == account_id,
            usage_minutes.c.minute >= int(start.timestamp()) // 60 * 60,
            usage_minutes.c.minute < int(end.timestamp()),
        )
        .group_by(usage_minutes.c.minute)
        .order_by(usage_minutes.c.minute)
    )
    if key_id is not None:
        query = query.where(usage_minutes.c.key_id == key_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        MinuteUsage(
            minute=datetime.fromtimestamp(row.minute, UTC),
            **{c: int(getattr(row, c)) for c in COUNTS},
        )
        for row in rows
    ]


async def last_used(engine: AsyncEngine, account_id: str) -> dict[str, datetime]:
    query = sa.select(key_last_used.c.key_id, key_last_used.c.last_used_at).where(
        key_last_used.c.account_id == account_id
    )
    async with engine.connect() as conn:
        return {row.key_id: _utc(row.last_used_at) for row in (await conn.execute(query)).all()}
