"""Sign-ups and dashboard sign-ins are budgeted per client address and for the whole system,
and an account has at most DASHBOARD_SESSIONS_PER_ACCOUNT sessions: scripted sign-ups no longer
multiply free requests, and sign-ins can no longer fill the session bucket, however many edges
take them. Each client is named by a (trusted) local proxy.

A system of its own, with two edges: the overall budgets are shared by every edge alive on the
bus, so the session's system, whose edges come and go with other tests, would change them."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from html import unescape

import httpx
import pytest

from aitbc_contracts.keyformat import generate_key
from aitbc_contracts.usage import WINDOW_SECONDS
from aitbc_infra.processes import ChildProcess
from tests.e2e.dashboard import Dashboard
from tests.e2e.stack import Stack
from tests.e2e.test_rate_limits import early_in_a_minute

EDGES = ("edge-a", "edge-b")
SIGNUPS, SIGN_INS = 8, 12  # a minute, from everyone to both edges: 4 and 6 each


@pytest.fixture(scope="module")
def budgets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    system = Stack(tmp_path_factory.mktemp("budgets"))
    try:
        system.start_bus()
        system.add_service("coordinator").start()
        for name in EDGES:
            system.add_edge(
                name,
                TRUSTED_PROXIES="127.0.0.1/32",
                SIGNUP_PER_ADDRESS_PER_HOUR="2",
                SIGNUP_GLOBAL_PER_MINUTE=str(SIGNUPS),
                SIGNIN_PER_ADDRESS_PER_MINUTE="2",
                SIGNIN_GLOBAL_PER_MINUTE=str(SIGN_INS),
                DASHBOARD_SESSIONS_PER_ACCOUNT="2",
            ).start()
        until_each_edge_hears_both(system)
        yield system
    finally:
        system.stop()


def until_each_edge_hears_both(system: Stack, within: float = 15) -> None:
    """Each edge counts the other within a heartbeat or two of its start (aitbc_edges_alive)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [re.search(r"^aitbc_edges_alive (\S+)$", system.metrics(n), re.M) for n in EDGES]
        if all(found and float(found.group(1)) == len(EDGES) for found in alive):
            return
        time.sleep(0.5)
    raise AssertionError(f"the edges did not hear each other: {alive}")


@pytest.fixture
def edge(budgets: Stack) -> ChildProcess:
    return budgets.processes[EDGES[0]]


def at(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def refused(answer: httpx.Response, code: str) -> bool:
    wait = int(answer.headers.get("retry-after", "0"))
    return answer.status_code == 429 and code in answer.text and wait >= 1


def test_sign_ups_sign_ins_and_sessions_have_budgets(edge: ChildProcess) -> None:
    early_in_a_minute(margin=40)  # the overall budgets are a minute's
    api = httpx.Client(base_url=edge.url, timeout=10)

    # sign-ups: two an hour from an address, the API's and the dashboard's together
    first = api.post("/v1/accounts", headers=at("203.0.113.1"))
    assert first.status_code == 201
    master = first.json()["master_key"]["key"]
    Dashboard(edge.url, headers=at("203.0.113.1")).sign_up()
    again = api.post("/v1/accounts", headers=at("203.0.113.1"))
    assert refused(again, "TOO_MANY_SIGNUPS")  # by the address's budget, not everyone's:
    assert "from this address" in again.json()["error"]["message"]  # it waits for the hour
    page = Dashboard(edge.url, headers=at("203.0.113.1"))
    page.get("/dashboard/sign-up")
    on_page = page.post("/dashboard/sign-up", {"name": "again"})
    assert refused(on_page, "TOO_MANY_SIGNUPS") and "text/html" in on_page.headers["content-type"]
    assert "Too many accounts were made from your network" in unescape(on_page.text)
    # and four a minute from everyone: this edge's half of the system's eight
    made = [api.post("/v1/accounts", headers=at("198.51.100.1")) for _ in range(2)]
    assert [answer.status_code for answer in made] == [201] * 2
    assert refused(api.post("/v1/accounts", headers=at("198.51.100.2")), "TOO_MANY_SIGNUPS")

    # sessions: two per account; a third sign-in ends the oldest
    browsers = [Dashboard(edge.url, headers=at(f"192.0.2.{n}")) for n in (1, 2, 3)]
    assert [b.sign_in(master).status_code for b in browsers] == [303] * 3
    statuses = [b.get("/dashboard/keys").status_code for b in browsers]
    assert statuses == [303, 200, 200]  # the first is sent to sign in again

    # sign-in attempts: two a minute from an address, right or wrong, and six from everyone
    # (this edge's half of twelve)
    guesser = Dashboard(edge.url, headers=at("203.0.113.9"))
    assert [guesser.sign_in(generate_key()).status_code for _ in range(2)] == [401] * 2
    third = guesser.sign_in(master)  # even the right key
    assert refused(third, "TOO_MANY_SIGN_INS") and guesser.session == ""
    assert Dashboard(edge.url, headers=at("192.0.2.4")).sign_in(master).status_code == 303
    late = Dashboard(edge.url, headers=at("192.0.2.5")).sign_in(master)
    assert refused(late, "TOO_MANY_SIGN_INS")
    assert "Too many sign-ins were tried" in unescape(late.text)


def test_the_overall_budgets_are_the_whole_systems_whichever_edges_take_them(
    budgets: Stack,
) -> None:
    """Each edge admits its share: two edges admit the budget between them, not twice it."""
    at_the_start_of_a_minute()  # windows of their own, not the test above's
    clients = [httpx.Client(base_url=budgets.processes[n].url, timeout=10) for n in EDGES]
    try:
        signups = [
            clients[n % 2].post("/v1/accounts", headers=at(f"198.51.100.{n}"))
            for n in range(2 * SIGNUPS)
        ]
        guesses = [
            Dashboard(budgets.processes[EDGES[n % 2]].url, headers=at(f"203.0.113.{n}")).sign_in(
                generate_key()
            )
            for n in range(2 * SIGN_INS)
        ]
    finally:
        for client in clients:
            client.close()
    made = [a.status_code for a in signups]
    assert made.count(201) == SIGNUPS, made  # four on each edge
    assert all(refused(a, "TOO_MANY_SIGNUPS") for a in signups if a.status_code != 201)
    tried = [a.status_code for a in guesses]
    assert tried.count(401) == SIGN_INS, tried  # six wrong keys checked on each edge
    assert all(refused(a, "TOO_MANY_SIGN_INS") for a in guesses if a.status_code != 401)


def at_the_start_of_a_minute() -> None:
    time.sleep(WINDOW_SECONDS - time.time() % WINDOW_SECONDS + 0.05)
