"""A PostgreSQL database of one test's or one benchmark run's own, so that no two share one:
made empty on a server, dropped after. The services never make or drop databases; this is
for what runs them."""

from __future__ import annotations

import uuid

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa

from aitbc_runtime.sql import normalise_database_url


class ScratchDatabase:
    """`server_url` names any database on the server that its user may connect to (its
    `postgresql://`, `postgres://` or `postgresql+asyncpg://` form); `url` is the new
    database's, with the async driver the services take."""

    def __init__(self, server_url: str, prefix: str) -> None:
        server = sa.make_url(normalise_database_url(server_url))
        if server.get_backend_name() != "postgresql":
            raise ValueError(f"not a PostgreSQL URL: {server.drivername}://...")
        self.name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.url = server.set(database=self.name).render_as_string(hide_password=False)
        # asyncpg reads libpq's form of the URL: no driver in the scheme.
        self._server = server.set(drivername="postgresql").render_as_string(hide_password=False)

    async def create(self) -> None:
        await self._on_server(f'CREATE DATABASE "{self.name}"')

    async def drop(self) -> None:
        """Drop it, even where connections to it are still open (a process that was killed)."""
        await self._on_server(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    async def _on_server(self, statement: str) -> None:
        conn = await asyncpg.connect(self._server)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()
