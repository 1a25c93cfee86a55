"""The keys database: the shared SQL plumbing, with this service's migrations."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_runtime import sql
from aitbc_runtime.sql import create_engine, write_transaction

MIGRATIONS = sql.Migrations(
    Path(__file__).parent / "migrations", version_table="alembic_version_keys", first_table="events"
)

__all__ = ["MIGRATIONS", "create_engine", "migrate", "write_transaction"]


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the keys schema to the newest revision."""
    await sql.migrate(engine, MIGRATIONS)
