"""A PostgreSQL database of a scenario's own, that the scenario can make unavailable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]

from tests.postgres import reachable, server_url

ADMIN_URL = server_url()


@dataclass(frozen=True)
class Database:
    name: str
    url: str  # for DATABASE_URL

    async def _admin(self, *statements: str) -> None:
        conn = await asyncpg.connect(ADMIN_URL)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def refuse_connections(self) -> None:
        """No new sessions, and every open one ended: the database is gone for its clients."""
        await self._admin(
            f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false',
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()",
        )

    async def allow_connections(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@contextmanager
def postgres_database() -> Iterator[Database | None]:
    """A new, empty database (dropped after), or None where no PostgreSQL is reachable."""
    if not reachable():
        yield None
        return
    name = f"aitbc_chaos_{uuid.uuid4().hex[:12]}"
    base = ADMIN_URL.rsplit("/", 1)[0]
    database = Database(name, f"{base}/{name}")
    asyncio.run(database._admin(f'CREATE DATABASE "{name}"'))
    try:
        yield database
    finally:
        asyncio.run(database._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
