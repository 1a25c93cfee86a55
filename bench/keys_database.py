"""The keys database of a benchmark run: a SQLite file in its work folder (`just up`'s default),
or with BENCH_POSTGRES_URL (a PostgreSQL server: postgresql://user@host:port/database, a
database there the bench may connect to) a database of the run's own on that server, made
before the seeding and dropped at the end, so that the figures of the production path (a
keys service on PostgreSQL) can be measured beside the embedded one's."""

from __future__ import annotations

import os
from pathlib import Path

from aitbc_runtime.scratch_database import ScratchDatabase

VARIABLE = "BENCH_POSTGRES_URL"


class KeysDatabase:
    def __init__(self, root: Path, server: str | None = None) -> None:
        server = os.environ.get(VARIABLE, "") if server is None else server
        self._postgres = ScratchDatabase(server, "aitbc_bench") if server else None
        if self._postgres is not None:
            self.name, self.url, self.kind = self._postgres.name, self._postgres.url, "PostgreSQL"
        else:
            self.name, self.url, self.kind = "", f"sqlite+aiosqlite:///{root / 'keys.db'}", "SQLite"

    async def create(self) -> None:
        if self._postgres is not None:
            await self._postgres.create()

    async def drop(self) -> None:
        if self._postgres is not None:
            await self._postgres.drop()
