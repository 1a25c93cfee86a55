"""Usage aggregates in SQL: counts and the stream position move together, in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aitbc_contracts.usage import MinuteUsage, UsageEvent
from aitbc_runtime.sql import Migrations, migrate, write_transaction

MIGRATIONS = Migrations(
    Path(__file__).parent / "migrations",
    version_table="alembic_version_usage",
    first_table="usage_minutes",
)
# The usage service's writers queue behind each other only, not behind the keys service's on a
# database they share.
WRITE_LOCK = 0x41495455  # "AITU"
COUNTS = (
    "requests", "admitted", "limited", "status_2xx", "status_3xx", "status_4xx", "status_5xx",
    "shadow_limited",  # admitted in shadow mode, and counted in `admitted` too
)  # fmt: skip

metadata = sa.MetaData()
usage_minutes = sa.Table(
    "usage_minutes",
    metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("minute", sa.BigInteger, primary_key=True),
    *(sa.Column(name, sa.BigInteger, nullable=False) for name in COUNTS[:-1]),
    sa.Column("shadow_limited", sa.BigInteger, nullable=False, server_default="0"),  # 0002
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
            if event.decision == "shadow_limited":
                row["shadow_limited"] += 1
        status_class = f"status_{event.status // 100}xx"
        if status_class in row:
            row[status_class] += 1
        seen = self.last_used.get(event.key_id)
        if seen is None or seen[1] < event.at:
            self.last_used[event.key_id] = (event.account_id, event.at)


@dataclass(frozen=True)
class _Upserts:
    """The three upserts of a commit, built once per dialect: each commit binds only its rows
    (building them per batch made SQLAlchemy redo column proxies and cache keys every time)."""

    counts: sa.Insert
    last_used: sa.Insert
    cursor: sa.Insert


@cache
def _upserts(dialect: str) -> _Upserts:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    newest = sa.func.greatest if dialect == "postgresql" else sa.func.max
    counts = insert(usage_minutes)
    last = insert(key_last_used)
    cursor = insert(stream_cursors)
    return _Upserts(
        counts=counts.on_conflict_do_update(
            index_elements=["account_id", "key_id", "minute"],
            set_={c: getattr(usage_minutes.c, c) + counts.excluded[c] for c in COUNTS},
        ),
        last_used=last.on_conflict_do_update(
            index_elements=["key_id"],
            set_={"last_used_at": newest(last.excluded.last_used_at, key_last_used.c.last_used_at)},
        ),
        cursor=cursor.on_conflict_do_update(
            index_elements=["name"], set_={"last_sequence": cursor.excluded.last_sequence}
        ),
    )


_CURSORS = sa.select(stream_cursors.c.name, stream_cursors.c.last_sequence).where(
    stream_cursors.c.name.in_(sa.bindparam("names", expanding=True))
)


async def cursors(conn: AsyncConnection, names: Iterable[str]) -> dict[str, int]:
    """The stored position of each named cursor: 0 for one never stored."""
    positions = dict.fromkeys(names, 0)
    for name, position in await conn.execute(_CURSORS, {"names": list(positions)}):
        positions[name] = int(position)
    return positions


# (cursor name, stream sequence, the events of that message)
Message = tuple[str, int, Sequence[UsageEvent]]


async def commit_batch(
    engine: AsyncEngine, names: Iterable[str], messages: Sequence[Message]
) -> dict[str, int]:
    """Counts a stretch of the stream read by one consumer covering the cursors `names`, and
    moves all those cursors to its last sequence, in one transaction; returns the positions.

    `messages` must be all that the stream holds for those cursors, in order, up to the last
    one's sequence: then every cursor, even one whose partition had no message, is counted
    up to it (a restart starts from the lowest cursor, so an idle partition must not lag).
    A message at or before its cursor's stored position was counted before a crash or a
    redelivery, and is skipped: nothing is counted twice.
    """
    if not messages:
        return {}
    last = max(sequence for _, sequence, _ in messages)
    async with write_transaction(engine, WRITE_LOCK) as conn:
        stored = await cursors(conn, {*names, *(name for name, _, _ in messages)})
        if last <= min(stored.values()):
            return stored
        tally = Tally()
        for name, sequence, events in messages:
            if sequence > stored[name]:
                for event in events:
                    tally.add(event)
        upserts = _upserts(conn.dialect.name)
        if tally.counts:
            await conn.execute(
                upserts.counts,
                [
                    {"account_id": a, "key_id": k, "minute": minute, **row}
                    for (a, k, minute), row in tally.counts.items()
                ],
            )
        if tally.last_used:
            await conn.execute(
                upserts.last_used,
                [
                    {"key_id": key, "account_id": account, "last_used_at": at}
                    for key, (account, at) in tally.last_used.items()
                ],
            )
        moved = {name: last for name, position in stored.items() if position < last}
        await conn.execute(
            upserts.cursor, [{"name": n, "last_sequence": p} for n, p in moved.items()]
        )
        return stored | moved


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
            # A time without an offset is UTC, as the aggregates are, wherever this runs;
            # read as local time, the first day of year 1 is out of range and raises.
            usage_minutes.c.minute >= int(_utc(start).timestamp()) // 60 * 60,
            usage_minutes.c.minute < int(_utc(end).timestamp()),
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
