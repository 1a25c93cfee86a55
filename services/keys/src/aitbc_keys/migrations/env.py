"""Alembic environment for the keys database."""

from aitbc_runtime.sql import alembic_env

alembic_env()
