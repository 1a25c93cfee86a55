"""Fail-open across edges: with the usage service away, each edge's local limiter admits its
share of an account's limit (the limit over the edges alive, rounded up), so two edges admit
the limit between them, not twice it (README, "Rate limits and usage")."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from aitbc_contracts.usage import WINDOW_SECONDS
from tests.e2e.stack import Stack

LIMIT = 60  # the free plan's, a minute
EDGES = ("edge-a", "edge-b")


@pytest.fixture(scope="module")
def no_usage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two edges in front of the keys service, with no usage service at all."""
    system = Stack(tmp_path_factory.mktemp("fail-open-edges"))
    try:
        system.nats.start()
        system.add_service("keys").start()
        system.add_service("coordinator").start()
        for name in EDGES:
            system.add_edge(name, USAGE_FAIL_MODE="open").start()
        yield system
    finally:
        system.stop()


def master_key(api: httpx.Client) -> str:
    key: str = api.post("/v1/accounts").json()["master_key"]["key"]
    return key


def shares(clients: list[httpx.Client], key: str) -> list[str]:
    """The limit each edge applies to the key's account now: its fail-open share."""
    answers = [client.get("/v1/jobs", headers={"X-API-Key": key}) for client in clients]
    assert all(a.headers["x-ratelimit-mode"] == "fail-open" for a in answers), answers
    return [a.headers["x-ratelimit-limit"] for a in answers]


def test_two_edges_failing_open_admit_the_limit_between_them(no_usage: Stack) -> None:
    clients = [httpx.Client(base_url=no_usage.processes[n].url, timeout=10) for n in EDGES]
    try:
        # Each edge hears the other within a heartbeat or two; a probe account says when (a
        # code without presence never gets there, and admits twice the limit below).
        probe = master_key(clients[0])
        deadline = time.monotonic() + 15
        while shares(clients, probe) != [str(LIMIT // 2)] * 2 and time.monotonic() < deadline:
            time.sleep(0.5)

        key = master_key(clients[0])
        if time.time() % WINDOW_SECONDS > WINDOW_SECONDS - 20:  # all in one minute
            time.sleep(WINDOW_SECONDS - time.time() % WINDOW_SECONDS + 0.5)
        answered = [
            client.get("/v1/jobs", headers={"X-API-Key": key})
            for _ in range(45)
            for client in clients
        ]
    finally:
        for client in clients:
            client.close()
    assert {a.headers["x-ratelimit-mode"] for a in answered} == {"fail-open"}
    assert {a.status_code for a in answered} == {200, 429}
    admitted = sum(a.status_code == 200 for a in answered)
    # The shares round up: at most one more per edge but the first (none for an even limit).
    assert LIMIT <= admitted <= LIMIT + len(EDGES) - 1, f"{admitted} admitted"
