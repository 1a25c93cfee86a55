"""E2E fixtures: one whole system for the session, and a client per test.

Most tests talk to the session's system (the keys service on SQLite). A module whose tests are
about what the keys service stores runs them on PostgreSQL too, by overriding `system` with
`keys_databases` (test_keys_flow.py, test_key_events.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from aitbc_runtime.scratch_database import ScratchDatabase
from tests.e2e.stack import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    system = Stack(tmp_path_factory.mktemp("stack")).start()
    yield system
    system.stop()


@pytest.fixture(scope="session")
def postgres_stack(
    tmp_path_factory: pytest.TempPathFactory, postgres_server_url: str
) -> Iterator[Stack]:
    """A whole system with the keys service on a PostgreSQL database made for it (and dropped
    after), so that no two runs share one; skipped where no PostgreSQL runs."""
    database = ScratchDatabase(postgres_server_url, "aitbc_test")
    asyncio.run(database.create())
    try:
        system = Stack(tmp_path_factory.mktemp("stack-postgres"), database_url=database.url)
        try:
            yield system.start()
        finally:
            system.stop()
    finally:
        asyncio.run(database.drop())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def keys_databases(request: pytest.FixtureRequest) -> Stack:
    """The session's system, then the one whose keys service stores on PostgreSQL."""
    name = "stack" if request.param == "sqlite" else "postgres_stack"
    system: Stack = request.getfixturevalue(name)
    return system


@pytest.fixture
def system(stack: Stack) -> Stack:
    """The system `api` talks to: the session's, unless a module overrides this fixture."""
    return stack


@pytest.fixture
def api(system: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.api_url, timeout=10) as client:
        yield client


@pytest.fixture
def account(api: httpx.Client) -> dict[str, str]:
    """A fresh account: its id and master key."""
    body = api.post("/v1/accounts", json={"name": "e2e"}).json()
    return {
        "account_id": body["account_id"],
        "master": body["master_key"]["key"],
        "master_key_id": body["master_key"]["key_id"],
    }
