"""The keys database of a benchmark run: a SQLite file in its work folder (`just up`'s default),
or with BENCH_POSTGRES_URL (a PostgreSQL server: postgresql://user@host:port/database, a
database there the bench may connect to) a database of the run's own on that server, made
before the seeding and dropped at the end, so that the figures of the production path (a
keys service on PostgreSQL) can be measured beside the embedded one's."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

VARIABLE = "BENCH_POSTGRES_URL"


class KeysDatabase:
    def __init__(self, root: Path, server: str | None = None) -> None:
        self.server = os.environ.get(VARIABLE, "") if server is None else server
        if self.server:
            self.name = f"aitbc_bench_{uuid.uuid4().hex[:12]}"
            base = self.server.rsplit("/", 1)[0].replace("postgresql://", "", 1)
            self.url = f"postgresql+asyncpg://{base}/{self.name}"
            self.kind = "PostgreSQL"
        else:
            self.name = ""
            self.url = f"sqlite+aiosqlite:///{root / 'keys.db'}"
            self.kind = "SQLite"

    async def create(self) -> None:
        if self.server:
            await self._on_server(f'CREATE DATABASE "{self.name}"')

    async def drop(self) -> None:
        if self.server:
            await self._on_server(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    async def _on_server(self, statement: str) -> None:
        conn = await asyncpg.connect(self.server)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()
