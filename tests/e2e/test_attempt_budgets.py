"""Sign-ups and dashboard sign-ins are budgeted per client address and for the whole edge, and
an account has at most DASHBOARD_SESSIONS_PER_ACCOUNT sessions: scripted sign-ups no longer
multiply free requests, and sign-ins can no longer fill the session bucket. Each client is
named by a (trusted) local proxy."""

from __future__ import annotations

from collections.abc import Iterator
from html import unescape

import httpx
import pytest

from aitbc_contracts.keyformat import generate_key
from aitbc_infra.processes import ChildProcess
from tests.e2e.dashboard import Dashboard
from tests.e2e.stack import Stack
from tests.e2e.test_rate_limits import early_in_a_minute


@pytest.fixture(scope="module")
def edge(stack: Stack) -> Iterator[ChildProcess]:
    process = stack.add_edge(
        "api-budgets",
        TRUSTED_PROXIES="127.0.0.1/32",
        SIGNUP_PER_ADDRESS_PER_HOUR="2",
        SIGNUP_GLOBAL_PER_MINUTE="4",
        SIGNIN_PER_ADDRESS_PER_MINUTE="2",
        SIGNIN_GLOBAL_PER_MINUTE="6",
        DASHBOARD_SESSIONS_PER_ACCOUNT="2",
    ).start()
    yield process
    process.stop()


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
    # and four a minute from everyone
    made = [api.post("/v1/accounts", headers=at("198.51.100.1")) for _ in range(2)]
    assert [answer.status_code for answer in made] == [201] * 2
    assert refused(api.post("/v1/accounts", headers=at("198.51.100.2")), "TOO_MANY_SIGNUPS")

    # sessions: two per account; a third sign-in ends the oldest
    browsers = [Dashboard(edge.url, headers=at(f"192.0.2.{n}")) for n in (1, 2, 3)]
    assert [b.sign_in(master).status_code for b in browsers] == [303] * 3
    statuses = [b.get("/dashboard/keys").status_code for b in browsers]
    assert statuses == [303, 200, 200]  # the first is sent to sign in again

    # sign-in attempts: two a minute from an address, right or wrong, and six from everyone
    guesser = Dashboard(edge.url, headers=at("203.0.113.9"))
    assert [guesser.sign_in(generate_key()).status_code for _ in range(2)] == [401] * 2
    third = guesser.sign_in(master)  # even the right key
    assert refused(third, "TOO_MANY_SIGN_INS") and guesser.session == ""
    assert Dashboard(edge.url, headers=at("192.0.2.4")).sign_in(master).status_code == 303
    late = Dashboard(edge.url, headers=at("192.0.2.5")).sign_in(master)
    assert refused(late, "TOO_MANY_SIGN_INS")
    assert "Too many sign-ins were tried" in unescape(late.text)
