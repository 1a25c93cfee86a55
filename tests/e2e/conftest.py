"""E2E fixtures: one whole system for the session, and a client per test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.stack import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    system = Stack(tmp_path_factory.mktemp("stack")).start()
    yield system
    system.stop()


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
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
