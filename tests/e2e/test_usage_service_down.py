"""The usage service killed mid-run: the fail policy holds, and nothing is lost or counted twice."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.e2e.stack import BIN, Stack
from tests.e2e.usage_stream import request_counts, usage_totals, wait_for
from tests.scrape import value


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    system = Stack(tmp_path_factory.mktemp("usage-down")).start()
    system.add_edge(
        "api-closed",
        USAGE_FAIL_MODE="closed",
        USAGE_TIMEOUT="2",  # a slow decision is no fault here: only a missing usage service
    ).start()
    yield system
    system.stop()


def fallback_starts(answered: list[httpx.Response], since: int) -> int | None:
    """From where on both edges answer with their fail policy, not from a lease (or None)."""
    firsts = {}
    for index in range(since, len(answered)):
        port = answered[index].url.port
        if port not in firsts and answered[index].headers.get("x-ratelimit-mode") != "exact":
            firsts[port] = index
    return max(firsts.values()) if len(firsts) == 2 else None


def test_fail_open_and_closed_while_the_usage_service_is_away(own_stack: Stack) -> None:
    with (
        httpx.Client(base_url=own_stack.api_url, timeout=10) as open_edge,
        httpx.Client(base_url=own_stack.processes["api-closed"].url, timeout=10) as closed_edge,
    ):
        account, master, key, key_id = an_enterprise_key(own_stack, open_edge)
        with requests_through(open_edge, closed_edge, key=key) as answered:
            while_down, recovered_from = usage_service_away_and_back(own_stack, answered)

        opened = [r for r in while_down if r.url.port == open_edge.base_url.port]
        closed = [r for r in while_down if r.url.port != open_edge.base_url.port]
        assert opened and all(
            r.status_code == 200 and r.headers["x-ratelimit-mode"] == "fail-open" for r in opened
        )
        assert closed and all(r.status_code == 503 for r in closed)
        assert {r.json()["error"]["code"] for r in closed} == {"SERVICE_UNAVAILABLE"}
        assert all(r.headers["x-ratelimit-mode"] == "fail-closed" for r in closed)
        recovered = answered[recovered_from:]
        assert all(
            r.status_code == 200 and r.headers["x-ratelimit-mode"] == "exact" for r in recovered
        )
        assert all(r.status_code in (200, 503) for r in answered), "no 500s, no surprises"
        metrics = own_stack.metrics()
        decisions = "aitbc_ratelimit_decisions_total"
        assert value(metrics, decisions, outcome="admitted", source="fallback") > 0
        each_counted_once(own_stack, open_edge, (account, master, key_id), answered)


def an_enterprise_key(stack: Stack, api: httpx.Client) -> tuple[str, str, str, str]:
    """A new account on the enterprise plan, and a key of it: (account, master, key, key id)."""
    body = api.post("/v1/accounts").json()
    account, master = body["account_id"], body["master_key"]["key"]
    made = api.post("/v1/api-keys", json={"name": "load"}, headers={"X-API-Key": master})
    key, key_id = made.json()["key"], made.json()["key_id"]
    subprocess.run(
        [str(BIN / "aitbc"), "accounts", "set-plan", account, "enterprise"],
        env={**stack.env(), "PATH": str(BIN)},
        check=True,
        capture_output=True,
    )
    return account, master, key, key_id


@contextmanager
def requests_through(*edges: httpx.Client, key: str) -> Iterator[list[httpx.Response]]:
    """Requests with `key` through each edge in turn, all the while; what they answered, in
    order."""
    answered: list[httpx.Response] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for edge in edges:
                answered.append(edge.get("/v1/jobs", headers={"X-API-Key": key}))
            time.sleep(0.01)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        yield answered
    finally:
        stop.set()
        worker.join()


def usage_service_away_and_back(
    stack: Stack, answered: list[httpx.Response]
) -> tuple[list[httpx.Response], int]:
    """The usage service killed under load, then restarted: the answers while it was away (on
    its edges' fail policies), and from where on both edges decide exactly again."""
    assert wait_for(lambda: len(answered) > 20)
    stack.processes["usage"].stop(kill=True)
    down_from = len(answered)
    # Units the usage service lent an edge before it died are its own exact decisions: each
    # edge admits from them until its lease ends (at most LEASE_SECONDS after it was last
    # renewed), and only then does its fail policy apply.
    fallen_back = wait_for(lambda: fallback_starts(answered, down_from), timeout=30)
    assert fallen_back, "an edge kept answering 'exact' with its usage service gone"
    assert wait_for(lambda: len(answered) > fallen_back + 40)
    while_down = answered[fallen_back + 10 : fallen_back + 40]  # in-flight ones settled
    stack.processes["usage"].start()
    recovered_from = wait_for(
        lambda: (
            all(r.headers.get("x-ratelimit-mode") == "exact" for r in answered[-2:])
            and len(answered)
        ),
        timeout=30,
    )
    assert recovered_from, "no exact decisions after the usage service came back"
    assert wait_for(lambda: len(answered) > recovered_from + 20)
    return while_down, recovered_from


def each_counted_once(
    stack: Stack, api: httpx.Client, key_of: tuple[str, str, str], answered: list[httpx.Response]
) -> None:
    """Each request is in the usage stream exactly once, and the aggregates count them all;
    `key_of` is (account, master key, key id)."""
    account, master, key_id = key_of
    made = {r.headers["x-request-id"] for r in answered}
    assert wait_for(
        lambda: made <= set(request_counts(stack.nats.access("auditor"), account)), timeout=20
    )
    counts = request_counts(stack.nats.access("auditor"), account)
    assert all(counts[rid] == 1 for rid in made)

    def load_key_requests() -> int:
        return usage_totals(api, master, key_id=key_id).get("requests", 0)

    wait_for(lambda: load_key_requests() >= len(answered), timeout=20)
    assert load_key_requests() == len(answered)
