"""Alembic environment for the usage database."""

from aitbc_contracts.sql import alembic_env

alembic_env()
