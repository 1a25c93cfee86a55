"""A PostgreSQL database of a scenario's own, that the scenario can make unavailable."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def reachable(url: str = ADMIN_URL) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 0.5):
            return True
    except OSError:
        return False


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
