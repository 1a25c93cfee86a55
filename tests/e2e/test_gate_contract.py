"""The gate's contract, wherever it runs: at the edge, in the sample Coordinator
(COORDINATOR_GATE=1) and in a FastAPI app (examples/fastapi_gate.py), each a real process on a
real bus, a client sees the same thing. The same tests run against each (`target`): the same
keys, error bodies, rate-limit headers, exact limits, revocation and usage events.

Accounts and keys are made through the edge of the target's system, whose bus the target
shares. The sample Coordinator and the FastAPI app share one system, whose Coordinator is gated.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aitbc_contracts.keyformat import generate_key
from tests.e2e.stack import Stack
from tests.e2e.test_keys_flow import new_key
from tests.e2e.test_rate_limits import early_in_a_minute, headers_of
from tests.e2e.usage_stream import request_counts, usage_events, usage_totals, wait_for

EXAMPLE = Path(__file__).parents[2] / "examples" / "fastapi_gate.py"
RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-mode",
    "ratelimit-policy",
    "ratelimit",
)
JOB = {"model": "echo", "input": "hello", "params": {"n": 1}}


@pytest.fixture(scope="module")
def gated_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A whole system whose sample Coordinator runs the gate in process."""
    system = Stack(tmp_path_factory.mktemp("stack-gated"), coordinator_gate=True).start()
    yield system
    system.stop()


@pytest.fixture(scope="module")
def fastapi_example(gated_stack: Stack) -> Iterator[str]:
    """The FastAPI example, on the gated system's bus; its URL."""
    argv = [sys.executable, str(EXAMPLE)]
    process = gated_stack.add_gated_app("fastapi-example", argv, "EXAMPLE_PORT").start()
    yield process.url
    process.stop()


@dataclass(frozen=True)
class Target:
    url: str  # where the gated requests go
    system: Stack  # whose edge makes the accounts and keys, whose bus carries the usage
    process: str  # the name of the system's process that serves `url`

    @property
    def log(self) -> str:
        return self.system.processes[self.process].log_file.read_text(errors="replace")


@pytest.fixture(scope="module", params=["edge", "coordinator", "fastapi"])
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "edge":
        system: Stack = request.getfixturevalue("stack")
        return Target(system.api_url, system, "api")
    system = request.getfixturevalue("gated_stack")
    if request.param == "coordinator":
        return Target(system.layout.upstream_url, system, "coordinator")
    return Target(request.getfixturevalue("fastapi_example"), system, "fastapi-example")


@pytest.fixture(scope="module")
def gated(target: Target) -> Iterator[httpx.Client]:
    """A client of the target."""
    with httpx.Client(base_url=target.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def edge(target: Target) -> Iterator[httpx.Client]:
    """A client of the edge that manages the target's keys."""
    with httpx.Client(base_url=target.system.api_url, timeout=10) as client:
        yield client


@dataclass(frozen=True)
class Caller:
    account_id: str
    master: str
    key: str  # a standard key of the account's
    key_id: str


def new_caller(edge: httpx.Client, **key: object) -> Caller:
    """A new account, and a standard key of it (`key`: the key's settings)."""
    body = edge.post("/v1/accounts").json()
    master = body["master_key"]["key"]
    made = new_key(edge, master, **key)
    return Caller(body["account_id"], master, made["key"], made["key_id"])


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and sorted(body["error"]) == ["code", "message"]
    assert body["error"]["code"] == code and body["error"]["message"]
    assert response.headers["x-request-id"]


def test_no_key_is_refused(gated: httpx.Client) -> None:
    assert_error(gated.get("/v1/jobs"), 401, "MISSING_API_KEY")
    assert_error(gated.post("/v1/jobs", json=JOB), 401, "MISSING_API_KEY")


def test_a_key_that_opens_nothing_is_refused(gated: httpx.Client) -> None:
    for key in (generate_key(), "junk"):  # never issued; not even a key
        assert_error(gated.get("/v1/jobs", headers={"X-API-Key": key}), 401, "INVALID_API_KEY")


def test_a_good_key_is_admitted_and_told_its_limits(
    gated: httpx.Client, edge: httpx.Client
) -> None:
    caller = new_caller(edge)
    created = gated.post("/v1/jobs", json=JOB, headers={"X-API-Key": caller.key})
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["id"].startswith("job_") and job["status"] == "queued"
    assert {name: job[name] for name in JOB} == JOB
    listed = gated.get("/v1/jobs", headers={"X-API-Key": caller.key})
    assert listed.status_code == 200, listed.text
    assert [j["id"] for j in listed.json()["jobs"]] == [job["id"]]
    assert listed.json()["total"] == 1
    for response in (created, listed):
        assert all(response.headers.get(name) for name in RATE_LIMIT_HEADERS), response.headers
        assert response.headers["x-ratelimit-mode"] == "exact"
        assert response.headers["x-request-id"]
    assert headers_of(created)[1] - 1 == headers_of(listed)[1]


def test_jobs_are_the_callers_accounts(gated: httpx.Client, edge: httpx.Client) -> None:
    mine, theirs = new_caller(edge), new_caller(edge)
    assert gated.post("/v1/jobs", json=JOB, headers={"X-API-Key": mine.key}).status_code == 201
    listed = gated.get("/v1/jobs", headers={"X-API-Key": theirs.key})
    assert listed.status_code == 200 and listed.json()["total"] == 0


def test_the_key_in_the_query_string(gated: httpx.Client, edge: httpx.Client) -> None:
    caller = new_caller(edge)
    assert gated.get("/v1/jobs", params={"api_key": caller.key}).status_code == 200
    same = gated.get("/v1/jobs", params={"api_key": caller.key}, headers={"X-API-Key": caller.key})
    assert same.status_code == 200
    other = new_caller(edge).key
    both = gated.get("/v1/jobs", params={"api_key": other}, headers={"X-API-Key": caller.key})
    assert_error(both, 400, "CONFLICTING_API_KEYS")


def test_a_key_in_the_query_string_is_never_logged(
    target: Target, gated: httpx.Client, edge: httpx.Client
) -> None:
    """Neither by the gate nor by the server in front of the app (uvicorn's access log writes
    the query string): the gate hands on the query without the key."""
    caller, other = new_caller(edge), new_caller(edge)
    assert gated.get("/v1/jobs", params={"api_key": caller.key, "limit": 5}).status_code == 200
    refused = gated.get(
        "/v1/jobs", params={"api_key": other.key}, headers={"X-API-Key": caller.key}
    )
    assert refused.status_code == 400
    assert gated.get("/v1/health", params={"api_key": caller.key}).status_code == 200
    log = target.log  # each line is written before its response is sent
    assert caller.key not in log and other.key not in log


def test_the_public_route_needs_no_key(gated: httpx.Client) -> None:
    health = gated.get("/v1/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert "x-ratelimit-limit" not in health.headers  # nobody's budget was spent


def test_exactly_the_limit_is_admitted(gated: httpx.Client, edge: httpx.Client) -> None:
    caller = new_caller(edge, rate_limit=5)
    early_in_a_minute(margin=5)
    with ThreadPoolExecutor(max_workers=6) as pool:
        calls = range(12)
        responses = list(
            pool.map(lambda _: gated.get("/v1/jobs", headers={"X-API-Key": caller.key}), calls)
        )
    admitted = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert (len(admitted), len(limited)) == (5, 7)
    assert sorted(headers_of(r)[1] for r in admitted) == [0, 1, 2, 3, 4]
    for response in responses:
        assert headers_of(response)[0] == 5
        assert response.headers["ratelimit-policy"] == '"key";q=5;w=60'
    for response in limited:
        assert_error(response, 429, "RATE_LIMIT_EXCEEDED")
        assert headers_of(response)[1] == 0
        assert 1 <= int(response.headers["retry-after"]) <= 61


def test_a_revoked_key_is_refused(gated: httpx.Client, edge: httpx.Client) -> None:
    caller = new_caller(edge)
    assert gated.get("/v1/jobs", headers={"X-API-Key": caller.key}).status_code == 200  # cached
    revoked = edge.delete(f"/v1/api-keys/{caller.key_id}", headers={"X-API-Key": caller.master})
    assert revoked.status_code == 200, revoked.text
    # The revocation reaches another process through the key event stream: soon, not at once.
    deadline = time.monotonic() + 20  # only a lost revocation takes this long
    while (after := gated.get("/v1/jobs", headers={"X-API-Key": caller.key})).status_code == 200:
        assert time.monotonic() < deadline, "the revoked key is still admitted"
        time.sleep(0.05)
    assert_error(after, 401, "API_KEY_REVOKED")


def test_a_restricted_key_calls_only_what_its_scopes_grant_from_its_networks(
    gated: httpx.Client, edge: httpx.Client
) -> None:
    """The test client is 127.0.0.1, which no target trusts as a proxy: what it says of the
    client's address is ignored."""
    reader = {"X-API-Key": new_caller(edge, scopes=["jobs:read"], allowed_ips=["::1"]).key}
    here = {"X-API-Key": new_caller(edge, scopes=["jobs:read"], allowed_ips=["127.0.0.0/8"]).key}
    elsewhere = {"X-API-Key": new_caller(edge, allowed_ips=["203.0.113.0/24"]).key}
    assert gated.get("/v1/jobs", headers=here).status_code == 200
    assert_error(gated.post("/v1/jobs", json=JOB, headers=here), 403, "INSUFFICIENT_SCOPE")
    assert "jobs:write" in gated.post("/v1/jobs", json=JOB, headers=here).text
    for refused in (reader, elsewhere, {**elsewhere, "X-Forwarded-For": "203.0.113.7"}):
        assert_error(gated.get("/v1/jobs", headers=refused), 403, "IP_NOT_ALLOWED")


def test_each_request_is_recorded_once_as_usage(
    target: Target, gated: httpx.Client, edge: httpx.Client
) -> None:
    caller = new_caller(edge, rate_limit=3)
    key = {"X-API-Key": caller.key}
    early_in_a_minute(margin=5)
    responses = [gated.post("/v1/jobs", json=JOB, headers=key)]
    responses += [gated.get("/v1/jobs", headers=key) for _ in range(3)]  # the last one limited
    assert [r.status_code for r in responses] == [201, 200, 200, 429]
    ids = {r.headers["x-request-id"] for r in responses}
    auditor = target.system.nats.access("auditor")

    def recorded() -> bool:
        return ids <= set(request_counts(auditor, caller.account_id))

    assert wait_for(recorded), "a request's usage event never arrived"
    counts = request_counts(auditor, caller.account_id)
    assert all(counts[rid] == 1 for rid in ids), "a request was recorded twice"
    events = [e for e in usage_events(auditor, caller.account_id) if e.request_id in ids]
    assert {(e.key_id, e.route) for e in events} == {(caller.key_id, "/v1/jobs")}
    assert sorted(e.status for e in events) == [200, 200, 201, 429]

    def totals() -> dict[str, int] | bool:
        seen = usage_totals(edge, caller.master, key_id=caller.key_id)
        return seen.get("requests") == 4 and seen

    assert wait_for(totals) == {
        "requests": 4,
        "admitted": 3,
        "limited": 1,
        "status_2xx": 3,
        "status_3xx": 0,
        "status_4xx": 1,
        "status_5xx": 0,
        "shadow_limited": 0,
    }


def test_a_request_the_edge_forwards_to_a_gated_coordinator_is_counted_once(
    gated_stack: Stack,
) -> None:
    """The edge counts it; the Coordinator lets the edge's signed request through uncounted.
    One budget for both ways in: a request straight to the Coordinator takes the next unit."""
    with (
        httpx.Client(base_url=gated_stack.api_url, timeout=10) as edge,
        httpx.Client(base_url=gated_stack.layout.upstream_url, timeout=10) as coordinator,
    ):
        caller = new_caller(edge, rate_limit=10)
        key = {"X-API-Key": caller.key}
        early_in_a_minute(margin=5)
        job = edge.post("/v1/jobs", json=JOB, headers=key)
        through_the_edge = [job] + [edge.get("/v1/jobs", headers=key) for _ in range(3)]
        straight = coordinator.get("/v1/jobs", headers=key)
    assert [r.status_code for r in through_the_edge] == [201, 200, 200, 200]
    assert straight.status_code == 200
    for response in [*through_the_edge, straight]:  # the edge's headers, not the gate's too
        for name in ("x-ratelimit-remaining", "x-request-id"):
            assert len(response.headers.get_list(name)) == 1, response.headers
    assert [headers_of(r)[1] for r in [*through_the_edge, straight]] == [9, 8, 7, 6, 5]
    # the Coordinator knew the caller's account both ways
    assert [j["id"] for j in straight.json()["jobs"]] == [job.json()["id"]]
    ids = {r.headers["x-request-id"] for r in [*through_the_edge, straight]}
    auditor = gated_stack.nats.access("auditor")
    assert wait_for(lambda: ids <= set(request_counts(auditor, caller.account_id)))
    counts = request_counts(auditor, caller.account_id)
    assert all(counts[rid] == 1 for rid in ids), "a request was recorded twice"
