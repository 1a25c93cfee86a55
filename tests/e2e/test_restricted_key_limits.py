"""Issue 21's whole case, through two edges of one system: a key limited to reading jobs from one
network, on a plan with a burst limit and a daily quota, tried first in shadow mode. Every limit
holds on both edges, and exactly: the counts are the usage service's, whichever edge asks.
(test_restricted_keys.py has the restrictions' own cases, test_plan_windows.py the windows'.)

The system has a plans file of its own (PLANS_FILE): `pro` has a burst of BURST requests a
second and a quota of QUOTA a day beside its minute. Its edges believe X-Forwarded-For from the
test's own address (TRUSTED_PROXIES), so each request says which network it comes from."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from tests.e2e.stack import BIN, Stack
from tests.e2e.usage_stream import usage_events

BURST, QUOTA = 5, 12
PLANS = f"""
[plans.free]
per_minute = 60

[plans.pro]
per_minute = 600
burst_per_second = {BURST}
per_day = {QUOTA}

[plans.enterprise]
per_minute = 6000
"""
INSIDE, OUTSIDE = "10.20.1.2", "198.51.100.7"  # the key's network is 10.20.0.0/16


class System(NamedTuple):
    stack: Stack
    clients: list[httpx.Client]  # one per edge
    plans: Path


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("restricted")
    plans = root / "plans.toml"
    plans.write_text(PLANS)
    env = {"PLANS_FILE": str(plans), "TRUSTED_PROXIES": "127.0.0.1/32"}
    stack = Stack(root / "stack", extra_env=env).start()
    second = stack.add_edge("api-second").start()
    clients = [httpx.Client(base_url=url, timeout=10) for url in (stack.api_url, second.url)]
    try:
        yield System(stack, clients, plans)
    finally:
        for client in clients:
            client.close()
        stack.stop()


def from_(address: str, key: str) -> dict[str, str]:
    return {"X-API-Key": key, "X-Forwarded-For": address}


def sign_up(api: httpx.Client) -> tuple[str, str]:
    body = api.post("/v1/accounts", headers={"X-Forwarded-For": INSIDE}).json()
    return body["account_id"], body["master_key"]["key"]


def restricted_key(api: httpx.Client, master: str, **restrictions: object) -> dict[str, str]:
    body = {"name": "reader", "scopes": ["jobs:read"], "allowed_ips": ["10.20.0.0/16"]}
    response = api.post("/v1/api-keys", json=body | restrictions, headers=from_(INSIDE, master))
    assert response.status_code == 201, response.text
    return response.json()


def code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def on_pro(stack: Stack, account: str) -> None:
    subprocess.run(
        [str(BIN / "aitbc"), "accounts", "set-plan", account, "pro"],
        env={**stack.env(), "PATH": str(BIN)},
        check=True,
        capture_output=True,
    )


def until_windowed(api: httpx.Client, key: str) -> None:
    """Until a request is decided on the pro plan's windows (the plan change travels through
    the key event stream); that request counts: one of the day's quota."""
    deadline = time.monotonic() + 20
    while True:
        response = api.get("/v1/jobs", headers=from_(INSIDE, key))
        assert response.status_code == 200, response.text
        if "w=86400" in response.headers["ratelimit-policy"]:
            return
        assert time.monotonic() < deadline, "the plan change never took effect"
        time.sleep(0.05)


def burst(edges: list[httpx.Client], key: str, count: int) -> tuple[list[httpx.Response], float]:
    """`count` concurrent requests, alternately through each edge, started early in a second
    (so that they fall in one); and the seconds they took."""
    while time.time() % 1 > 0.1:
        time.sleep(0.01)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=count) as pool:
        calls = [
            pool.submit(edges[i % 2].get, "/v1/jobs", headers=from_(INSIDE, key))
            for i in range(count)
        ]
        responses = [call.result() for call in calls]
    return responses, time.monotonic() - started


def not_near_midnight() -> None:
    """The day's quota is a UTC day's: a test must not straddle two."""
    left = 86_400 - time.time() % 86_400
    if left < 60:
        time.sleep(left + 0.1)


def test_a_restricted_keys_burst_and_daily_quota_hold_exactly_across_two_edges(
    edges: System,
) -> None:
    stack, clients, _ = edges
    not_near_midnight()
    account, master = sign_up(clients[0])
    key = restricted_key(clients[0], master)["key"]
    on_pro(stack, account)
    until_windowed(clients[0], key)
    # Refused for what the key may not do, before any limit is asked: none of these counts.
    for api in clients:
        outside = api.get("/v1/jobs", headers=from_(OUTSIDE, key))
        assert (outside.status_code, code(outside)) == (403, "IP_NOT_ALLOWED")
        writing = api.post("/v1/jobs", json={}, headers=from_(INSIDE, key))
        assert (writing.status_code, code(writing)) == (403, "INSUFFICIENT_SCOPE")
    admitted, windows = 1, set()  # the request that saw the plan change was admitted
    while admitted < QUOTA:
        responses, took = burst(clients, key, 2 * BURST)
        ok = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code != 200]
        assert all(r.status_code == 429 for r in refused), [r.text for r in refused]
        if took < 0.9:  # all of it in one second: the burst limit is what bounds it
            assert len(ok) <= BURST
        admitted += len(ok)
        windows |= {r.json()["error"]["message"] for r in refused}
        assert admitted <= QUOTA
    assert admitted == QUOTA  # exactly the day's quota, across both edges
    assert any("per second" in message for message in windows)
    for api in clients:  # and nothing more today, on either edge
        over = api.get("/v1/jobs", headers=from_(INSIDE, key))
        assert (over.status_code, code(over)) == (429, "RATE_LIMIT_EXCEEDED")
        assert over.json()["error"]["message"] == f"Daily quota of {QUOTA} requests exceeded"
        seconds_to_midnight = 86_400 - time.time() % 86_400
        assert 1 <= int(over.headers["retry-after"]) <= seconds_to_midnight + 1
        assert "w=1" in over.headers["ratelimit-policy"]


def test_shadow_mode_refuses_nothing_and_records_what_it_would_have(
    edges: System,
) -> None:
    stack, clients, _ = edges
    not_near_midnight()
    account, master = sign_up(clients[0])
    key = restricted_key(clients[0], master, shadow=True)
    on_pro(stack, account)
    until_windowed(clients[0], key["key"])
    responses, took = burst(clients, key["key"], 3 * BURST)
    assert [r.status_code for r in responses] == [200] * (3 * BURST)
    assert {r.headers["x-ratelimit-mode"] for r in responses} == {"shadow"}
    # What the limits would have refused is on the usage stream, so analytics see it. Each
    # edge sends its own batches: wait for all of the burst's events, not the first edge's.
    ids = {r.headers["x-request-id"] for r in responses}
    deadline = time.monotonic() + 10
    while True:
        events = [
            e for e in usage_events(stack.layout.access("auditor"), account) if e.request_id in ids
        ]
        would = [e for e in events if e.decision == "shadow_limited"]
        if len(events) >= len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert would, "no request was recorded as one the limits would have refused"
    if took < 0.9:
        assert len(would) >= 2 * BURST - 1  # the burst's excess (one may have been admitted)

    # Enforced from now on, through either edge. The owner's call counts against the account's
    # windows too: it waits for a second the burst has not filled (the shadow burst took 6 of
    # the day's 12: the refused ones took none).
    time.sleep(1.05 - time.time() % 1)
    enforced = clients[1].patch(
        f"/v1/api-keys/{key['key_id']}", json={"shadow": False}, headers=from_(INSIDE, master)
    )
    assert enforced.status_code == 200, enforced.text
    # Both edges hear of the change from the key event stream: a burst across them may find
    # one still in shadow mode for a moment, never for longer than the deadline.
    deadline = time.monotonic() + 5
    while True:
        responses, _ = burst(clients, key["key"], 3 * BURST)
        enforced_everywhere = all(r.headers.get("x-ratelimit-mode") != "shadow" for r in responses)
        if enforced_everywhere and any(r.status_code == 429 for r in responses):
            break
        assert time.monotonic() < deadline, "the key stayed in shadow mode"


def test_the_plans_file_is_read_again_when_it_changes(edges: System) -> None:
    """A plan's limit changed in the file reaches every process without a restart."""
    _, clients, plans = edges
    _, master = sign_up(clients[0])
    key = restricted_key(clients[0], master)["key"]
    plans.write_text(PLANS.replace("per_minute = 60", "per_minute = 70"))
    try:
        deadline = time.monotonic() + 30
        while True:
            response = clients[1].get("/v1/jobs", headers=from_(INSIDE, key))
            if response.headers.get("x-ratelimit-limit") == "70":
                break
            assert time.monotonic() < deadline, "the new limit never took effect"
            time.sleep(0.5)
    finally:
        plans.write_text(PLANS)
