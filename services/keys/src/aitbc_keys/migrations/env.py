"""Alembic environment for the keys database."""

from aitbc_contracts.sql import alembic_env

alembic_env()
