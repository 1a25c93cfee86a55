"""The bench's keys database: SQLite in the run's folder, or a PostgreSQL database of the run's
own on BENCH_POSTGRES_URL's server (never the server's database itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.keys_database import KeysDatabase


def test_without_a_server_the_keys_database_is_a_sqlite_file_in_the_runs_folder(
    tmp_path: Path,
) -> None:
    database = KeysDatabase(tmp_path, server="")
    assert (database.kind, database.url) == ("SQLite", f"sqlite+aiosqlite:///{tmp_path}/keys.db")


def test_on_a_server_each_run_has_a_database_of_its_own(tmp_path: Path) -> None:
    server = "postgresql://postgres@127.0.0.1:5432/test"
    one, other = KeysDatabase(tmp_path, server=server), KeysDatabase(tmp_path, server=server)
    assert one.kind == "PostgreSQL" and one.name.startswith("aitbc_bench_")
    assert one.url == f"postgresql+asyncpg://postgres@127.0.0.1:5432/{one.name}"
    assert one.name != other.name and one.name != "test"


def test_the_server_url_may_name_its_driver_or_use_the_short_scheme(tmp_path: Path) -> None:
    for server in (
        "postgres://postgres@127.0.0.1:5432/test",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    ):
        database = KeysDatabase(tmp_path, server=server)
        assert database.url == f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database.name}"


def test_a_url_that_is_not_postgresql_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        KeysDatabase(tmp_path, server="mysql://root@127.0.0.1/test")
