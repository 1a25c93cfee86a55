"""Exact per-plan limits across edges, as a client sees them: headers, 429s, the next minute."""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.stack import BIN, Stack


@pytest.fixture(scope="module")
def second_edge(stack: Stack) -> Iterator[str]:
    """Another edge on the same bus: limits must hold across both."""
    process = stack.add_edge("api-second").start()
    yield process.url
    process.stop()


def early_in_a_minute(margin: float = 20.0) -> None:
    """Waits, if need be, so that the next `margin` seconds fall inside one calendar minute."""
    if time.time() % 60 > 60 - margin:
        time.sleep(60 - time.time() % 60 + 0.05)


def sign_up(api: httpx.Client) -> tuple[str, str]:
    body = api.post("/v1/accounts").json()
    return body["account_id"], body["master_key"]["key"]


def headers_of(response: httpx.Response) -> tuple[int, int, int]:
    h = response.headers
    return int(h["x-ratelimit-limit"]), int(h["x-ratelimit-remaining"]), int(h["x-ratelimit-reset"])


def test_seventy_requests_through_two_edges_admit_exactly_sixty(
    stack: Stack, second_edge: str
) -> None:
    edges = [httpx.Client(base_url=url, timeout=10) for url in (stack.api_url, second_edge)]
    _, key = sign_up(edges[0])
    early_in_a_minute()
    minute_end = (int(time.time()) // 60 + 1) * 60

    def call(i: int) -> httpx.Response:
        return edges[i % 2].get("/v1/jobs", headers={"X-API-Key": key})

    with ThreadPoolExecutor(max_workers=14) as pool:
        responses = list(pool.map(call, range(70)))
    admitted = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert (len(admitted), len(limited)) == (60, 10)
    for response in responses:
        limit, _remaining, reset = headers_of(response)
        assert (limit, reset) == (60, minute_end)
        assert response.headers["ratelimit-policy"] == '"free";q=60;w=60'
        assert response.headers["x-ratelimit-mode"] == "exact"
    # Each admitted request took one unit of the budget: 59, 58, ... 0, each exactly once.
    assert sorted(headers_of(r)[1] for r in admitted) == list(range(60))
    for response in limited:
        assert response.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        assert headers_of(response)[1] == 0
        retry_after = int(response.headers["retry-after"])
        assert 1 <= retry_after <= math.ceil(minute_end - time.time()) + 1
        assert response.headers["ratelimit"].startswith('"free";r=0;t=')

    # The next minute admits again.
    time.sleep(max(0.0, minute_end - time.time()) + 0.1)
    again = call(0)
    assert again.status_code == 200
    assert headers_of(again) == (60, 59, minute_end + 60)
    for edge in edges:
        edge.close()


def test_remaining_never_rises_within_a_minute(stack: Stack, second_edge: str) -> None:
    edges = [httpx.Client(base_url=url, timeout=10) for url in (stack.api_url, second_edge)]
    _, key = sign_up(edges[0])
    early_in_a_minute()
    seen = []
    for i in range(64):
        response = edges[i % 2].get("/v1/jobs", headers={"X-API-Key": key})
        seen.append((response.status_code, headers_of(response)[1]))
    assert [remaining for _, remaining in seen] == [*range(59, -1, -1), 0, 0, 0, 0]
    assert [status for status, _ in seen] == [200] * 60 + [429] * 4
    for edge in edges:
        edge.close()


def test_a_key_with_its_own_lower_limit(api: httpx.Client) -> None:
    _, master = sign_up(api)
    early_in_a_minute()
    made = api.post(
        "/v1/api-keys", json={"name": "slow", "rate_limit": 5}, headers={"X-API-Key": master}
    ).json()
    statuses = []
    for _ in range(8):
        response = api.get("/v1/jobs", headers={"X-API-Key": made["key"]})
        statuses.append(response.status_code)
        assert headers_of(response)[0] == 5
        assert response.headers["ratelimit-policy"] == '"key";q=5;w=60'
    assert statuses == [200] * 5 + [429] * 3
    # The account's own budget is still there for its other keys (1 spent creating the key).
    listed = api.get("/v1/api-keys", headers={"X-API-Key": master})
    assert listed.status_code == 200 and headers_of(listed)[1] == 60 - 2 - 5


def set_plan_to_pro(stack: Stack, api: httpx.Client, account: str, key: str) -> httpx.Response:
    """Sets the plan with the CLI, then waits for the first request it admits."""
    subprocess.run(
        [str(BIN / "aitbc"), "accounts", "set-plan", account, "pro"],
        env={**stack.env(), "PATH": str(BIN)},
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + 20  # only a lost change takes this long
    while True:  # the plan change travels through the key event stream to every service
        response = api.get("/v1/jobs", headers={"X-API-Key": key})
        if response.status_code == 200:
            return response
        assert time.monotonic() < deadline, "the plan change never took effect"
        time.sleep(0.02)


def test_set_plan_to_pro_applies_to_the_next_request(stack: Stack, api: httpx.Client) -> None:
    account, key = sign_up(api)
    early_in_a_minute(margin=40)
    statuses = [api.get("/v1/jobs", headers={"X-API-Key": key}).status_code for _ in range(61)]
    assert statuses.count(200) == 60 and statuses[-1] == 429
    response = set_plan_to_pro(stack, api, account, key)
    limit, remaining, _ = headers_of(response)
    assert (limit, remaining) == (600, 600 - 61)
    assert response.headers["ratelimit-policy"] == '"pro";q=600;w=60'
    with ThreadPoolExecutor(max_workers=8) as pool:
        rest = list(pool.map(lambda _: api.get("/v1/jobs", headers={"X-API-Key": key}), range(560)))
    assert sum(r.status_code == 200 for r in rest) == 600 - 61
    assert sum(r.status_code == 429 for r in rest) == 560 - (600 - 61)


def test_management_responses_carry_the_headers_too(api: httpx.Client) -> None:
    _, master = sign_up(api)
    listed = api.get("/v1/api-keys", headers={"X-API-Key": master})
    assert listed.status_code == 200
    limit, remaining, reset = headers_of(listed)
    assert limit == 60 and 0 <= remaining < 60 and reset % 60 == 0


def test_a_refused_request_changes_nothing_upstream(stack: Stack, api: httpx.Client) -> None:
    """GETs may go upstream while their decision is taken (speculative forwarding); a request
    that could change something never does, so a refused POST creates no job."""
    account, key = sign_up(api)
    early_in_a_minute(margin=40)
    with ThreadPoolExecutor(max_workers=8) as pool:
        gets = list(pool.map(lambda _: api.get("/v1/jobs", headers={"X-API-Key": key}), range(60)))
    assert all(r.status_code == 200 for r in gets)
    job = {"model": "m", "input": "p"}
    refused = api.post("/v1/jobs", headers={"X-API-Key": key}, json=job)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert set_plan_to_pro(stack, api, account, key).json()["total"] == 0
    assert api.post("/v1/jobs", headers={"X-API-Key": key}, json=job).status_code == 201
    assert api.get("/v1/jobs", headers={"X-API-Key": key}).json()["total"] == 1
