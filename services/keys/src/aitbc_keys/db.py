"""The keys database: the shared SQL plumbing, with this service's migrations."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_runtime import sql
from aitbc_runtime.sql import create_engine, write_transaction

MIGRATIONS = Path(__file__).parent / "migrations"

__all__ = ["MIGRATIONS", "create_engine", "migrate", "write_transaction"]


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the keys schema to the newest revision."""
    await sql.migrate(engine, MIGRATIONS)
