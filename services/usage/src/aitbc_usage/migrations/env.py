"""Alembic environment for the usage database."""

from aitbc_runtime.sql import alembic_env

alembic_env()
