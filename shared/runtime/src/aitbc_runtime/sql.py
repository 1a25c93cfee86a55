"""SQL plumbing both stateful services need alike: engines for SQLite and PostgreSQL,
serialised write transactions, and Alembic migrations run from code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# Any constant will do: the writers of one service's data take one lock (the keys service's
# by default), and every service's migrations this one, since they may share a database.
WRITE_LOCK_KEY = 0x41495442  # "AITB"
_WRITE_OPTION = "aitbc_write"


def normalise_database_url(url: str) -> str:
    """Give plain URLs the async driver SQLAlchemy needs: asyncpg or aiosqlite."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            url = "postgresql+asyncpg://" + url[len(plain) :]
    if url.startswith("postgresql+asyncpg://"):
        return _asyncpg_query(url)
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def _asyncpg_query(url: str) -> str:
    """libpq's `sslmode=` as asyncpg's `ssl=`, which takes the same modes (disable ...
    verify-full). A provider hands out its PostgreSQL URL in libpq's form, `?sslmode=require`
    most often, and asyncpg refuses an argument it does not know."""
    base, mark, query = url.partition("?")
    if not mark or "sslmode" not in query:
        return url
    pairs = parse_qsl(query, keep_blank_values=True)
    return base + "?" + urlencode([("ssl" if k == "sslmode" else k, v) for k, v in pairs])


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    path = rest.split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    url = normalise_database_url(url)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    """SQLAlchemy's recipe for emitting BEGIN ourselves, so writers can use BEGIN IMMEDIATE.

    A deferred transaction that reads and then writes can fail with SQLITE_BUSY at the write
    instead of waiting; IMMEDIATE takes the write lock first, so writers queue (busy_timeout).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver must not emit its own BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode except on power loss
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE_OPTION) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


@asynccontextmanager
async def write_transaction(
    engine: AsyncEngine, lock: int = WRITE_LOCK_KEY
) -> AsyncIterator[AsyncConnection]:
    """One transaction holding the write lock `lock`, committed on exit.

    Serialising writers makes positions become visible in commit order (the outbox relay
    relies on it: it must never see position n+1 before n). Another service's writers on the
    same PostgreSQL database take a lock of their own and do not wait for these (SQLite has
    one writer at a time whatever the lock).
    """
    async with engine.connect() as conn:
        conn = await conn.execution_options(**{_WRITE_OPTION: True})
        async with conn.begin():
            if conn.dialect.name == "postgresql":
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})
            yield conn


# Alembic's default version table: where every service kept its revision before each had its
# own, which made two services on one database read each other's revisions.
SHARED_VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class Migrations:
    """A service's Alembic scripts, and the table that holds its revision: one of its own, so
    that several services can share one database."""

    folder: Path
    version_table: str
    first_table: str  # made by its first revision: a database that has it is this service's


def alembic_config(migrations: Migrations, connection: sa.Connection | None = None) -> Config:
    """An Alembic config built in code: no alembic.ini, the scripts ship inside the package."""
    config = Config()
    config.set_main_option("script_location", str(migrations.folder))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = migrations.version_table
    return config


async def migrate(engine: AsyncEngine, migrations: Migrations) -> None:
    """Upgrade to the newest revision; safe when several processes start at once, of one
    service or of several sharing the database (one lock for them all)."""

    def upgrade(connection: sa.Connection) -> None:
        _adopt_shared_revision(connection, migrations)
        if migrations.version_table in sa.inspect(connection).get_table_names():
            _refuse_unknown(connection, migrations, migrations.version_table)
        command.upgrade(alembic_config(migrations, connection), "head")

    async with write_transaction(engine) as conn:
        await conn.run_sync(upgrade)


def _adopt_shared_revision(connection: sa.Connection, migrations: Migrations) -> None:
    """A database migrated before each service had its own version table holds its revision
    in SHARED_VERSION_TABLE: move it into this service's table when it is this service's (its
    first table is there; the services' revision names overlap), and drop the shared table,
    which held nothing else."""
    tables = set(sa.inspect(connection).get_table_names())
    shared = SHARED_VERSION_TABLE
    if migrations.version_table in tables or shared not in tables:
        return
    if migrations.first_table not in tables:  # another service's revision, or none
        return
    revisions = _refuse_unknown(connection, migrations, shared)
    command.stamp(alembic_config(migrations, connection), revisions)
    connection.execute(sa.text(f"DROP TABLE {shared}"))


def _refuse_unknown(connection: sa.Connection, migrations: Migrations, table: str) -> list[str]:
    """The revisions `table` holds, all of them known to these migrations. A database that a
    newer version migrated (the software rolled back after an upgrade, or a database of
    another deployment) is refused in words: Alembic would only say it cannot locate it."""
    version = sa.table(table, sa.column("version_num"))
    revisions = [row[0] for row in connection.execute(sa.select(version.c.version_num))]
    known = ScriptDirectory.from_config(alembic_config(migrations, connection))
    for revision in revisions:
        try:
            known.get_revision(revision)
        except CommandError:
            raise RuntimeError(
                f"{table} holds revision {revision!r}, which {migrations.folder} does not know: "
                "is the database from a newer version? Run that version, or restore a backup "
                "taken before its upgrade"
            ) from None
    return revisions


def alembic_env() -> None:
    """The body of every migrations/env.py: run on the connection `migrate` hands over."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through aitbc_runtime.sql.migrate(engine, migrations)")
    version_table = context.config.attributes["version_table"]
    context.configure(connection=connection, target_metadata=None, version_table=version_table)
    with context.begin_transaction():
        context.run_migrations()
