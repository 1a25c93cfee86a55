"""The URLs an operator gives, as they are written: a PostgreSQL URL in libpq's form, as
providers hand it out (`?sslmode=...`), runs the keys and usage services and `aitbc events
verify`; a malformed one is refused in one line; and no error message or help text shows a
database password or a NATS URL's password or token."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from aitbc_infra.nats_server import free_port
from aitbc_runtime.scratch_database import ScratchDatabase
from tests.e2e.stack import BIN, Stack

SECRET = "s3cretPassw0rd"


def aitbc(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "aitbc"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def libpq_form(url: str) -> str:
    """A scratch database's URL as a provider writes it: no driver in the scheme."""
    return "postgresql://" + url.split("://", 1)[1]


@pytest.mark.postgres
def test_a_postgres_url_with_sslmode_runs_the_services_and_verify(
    tmp_path: Path, postgres_server_url: str
) -> None:
    """`?sslmode=` is libpq's; asyncpg, which the services use, calls it `ssl` and refused the
    URL (a TypeError at the first connection: the services could not start)."""
    database = ScratchDatabase(postgres_server_url, "aitbc_test")
    asyncio.run(database.create())
    url = libpq_form(database.url) + "?sslmode=prefer"  # this server has no TLS: prefer
    system = Stack(tmp_path, database_url=url, extra_env={"USAGE_DATABASE_URL": url})
    try:
        system.start_bus()  # both services migrate their tables, and answer on the bus
        env = {**system.env("admin"), "DATABASE_URL": url}
        made = aitbc("accounts", "create", "--plan", "free", **env)
        assert made.returncode == 0, made.stderr
        checked = aitbc("events", "verify", **env)
        assert checked.returncode == 0, checked.stderr
        assert "store:  2 events, intact" in checked.stdout
    finally:
        system.stop()
        asyncio.run(database.drop())


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://aitbc:{SECRET}@127.0.0.1:notaport/keys",  # not a port
        f"postgresql://aitbc:{SECRET}@127.0.0.1:99999/keys",  # out of range
        f"postgresql://aitbc:{SECRET}@127.0.0.1:5432/keys?no_such_option=1",
    ],
)
def test_verify_refuses_a_malformed_database_url_in_one_line_without_its_password(
    url: str,
) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"  # the store is read first: no bus needed
    done = aitbc("events", "verify", "--database-url", url, NATS_URL=nowhere)
    assert done.returncode == 1
    assert done.stderr.startswith("aitbc: error: cannot use the event store's database URL: ")
    assert len(done.stderr.splitlines()) == 1, done.stderr  # no traceback
    assert SECRET not in done.stderr


@pytest.mark.parametrize("userinfo", [f"operator:{SECRET}", SECRET])  # a password, a token
def test_no_message_or_help_shows_a_nats_urls_secret(userinfo: str) -> None:
    url = f"nats://{userinfo}@127.0.0.1:{free_port()}"  # nothing listens there
    database = f"postgresql://aitbc:{SECRET}@127.0.0.1:5432/keys"
    done = aitbc("keys", "list", "--account", "acc_1", NATS_URL=url)
    assert done.returncode == 1
    assert done.stderr.startswith("aitbc: error: cannot reach NATS at nats://")
    assert "***@127.0.0.1:" in done.stderr
    for args in (["--help"], ["events", "verify", "--help"]):
        shown = aitbc(*args, NATS_URL=url, DATABASE_URL=database)
        assert shown.returncode == 0 and "***@127.0.0.1" in shown.stdout
        assert SECRET not in shown.stdout
    assert SECRET not in done.stderr
