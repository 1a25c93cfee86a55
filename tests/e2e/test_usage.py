"""Usage as recorded: each request once in the stream, aggregates equal to what was made."""

from __future__ import annotations

import contextlib
import subprocess
from datetime import UTC, datetime, timedelta

import httpx

from tests.e2e.stack import BIN, Stack
from tests.e2e.usage_stream import request_counts, usage_events, usage_totals, wait_for
from tests.scrape import value

PUBLISHED = "aitbc_usage_events_published_total"
USAGE_BATCHES = ("aitbc_bus_batches_total", {"batch": "usage-events"})


def test_each_request_is_recorded_once_and_aggregated_exactly(
    stack: Stack, api: httpx.Client
) -> None:
    metrics_before = stack.metrics()
    body = api.post("/v1/accounts").json()
    account, master = body["account_id"], body["master_key"]["key"]
    made = api.post("/v1/api-keys", json={"name": "w"}, headers={"X-API-Key": master}).json()
    key_headers = {"X-API-Key": made["key"]}
    request_ids = {}
    statuses = []
    for i in range(25):
        # ids of any shape are one route: job_nope is no id the old pattern knew
        path = "/v1/jobs" if i % 5 else ("/v1/jobs/job_nope", "/v1/jobs/job_" + "0" * 32)[i % 2]
        response = api.get(path, headers=key_headers)
        request_ids[response.headers["x-request-id"]] = response.status_code
        statuses.append(response.status_code)
    assert statuses.count(404) == 5

    # every authenticated request: the key's creation and the 25 calls
    assert wait_for(lambda: len(request_counts(stack.nats.access("auditor"), account)) >= 26)
    counts = request_counts(stack.nats.access("auditor"), account)
    assert len(counts) == 26
    assert all(counts[rid] == 1 for rid in request_ids), "a request is missing or duplicated"
    assert set(counts.values()) == {1}

    events = {e.request_id: e for e in usage_events(stack.nats.access("auditor"), account)}
    sample = events[next(iter(request_ids))]
    assert sample.key_id == made["key_id"] and sample.method == "GET"
    assert {events[rid].route for rid in request_ids} == {"/v1/jobs", "/v1/jobs/{id}"}
    assert all(made["key"] not in repr(e) for e in events.values())
    # the edge counts the events it stored, and the batches (NATS messages) they went in
    metrics_after = stack.metrics()
    events_moved = value(metrics_after, PUBLISHED) - value(metrics_before, PUBLISHED)
    name, labels = USAGE_BATCHES
    batches_moved = value(metrics_after, name, **labels) - value(metrics_before, name, **labels)
    assert events_moved >= 26 and 1 <= batches_moved <= events_moved

    key_totals = wait_for(
        lambda: (t := usage_totals(api, master, key_id=made["key_id"])).get("requests") == 25 and t
    )
    assert key_totals == {
        "requests": 25,
        "admitted": 25,
        "limited": 0,
        "status_2xx": 20,
        "status_3xx": 0,
        "status_4xx": 5,
        "status_5xx": 0,
        "shadow_limited": 0,
    }
    keys = api.get("/v1/api-keys", headers={"X-API-Key": master}).json()["keys"]
    used = next(k for k in keys if k["key_id"] == made["key_id"])
    assert used["last_used_at"] is not None


def test_limited_requests_are_recorded_as_limited(stack: Stack, api: httpx.Client) -> None:
    body = api.post("/v1/accounts").json()
    master = body["master_key"]["key"]
    made = api.post(
        "/v1/api-keys", json={"name": "w", "rate_limit": 3}, headers={"X-API-Key": master}
    ).json()
    for _ in range(5):
        api.get("/v1/jobs", headers={"X-API-Key": made["key"]})
    totals = wait_for(
        lambda: (t := usage_totals(api, master, key_id=made["key_id"])).get("requests") == 5 and t
    )
    assert (totals["admitted"], totals["limited"], totals["status_4xx"]) == (3, 2, 2)


def test_usage_queries_are_validated_and_scoped(api: httpx.Client) -> None:
    master = api.post("/v1/accounts").json()["master_key"]["key"]
    other = api.post("/v1/accounts").json()["master_key"]["key"]
    theirs = api.post("/v1/api-keys", json={"name": "t"}, headers={"X-API-Key": other}).json()
    mine = {"X-API-Key": master}
    now = datetime.now(UTC)
    for params, status in [
        ({"from": "yesterday"}, 400),
        ({"from": now.isoformat(), "to": (now - timedelta(hours=1)).isoformat()}, 400),
        ({"from": (now - timedelta(days=40)).isoformat()}, 400),
        ({"to": "9999-12-31T23:59:59-05:00"}, 400),  # no time in UTC that a date holds
        ({"to": "0001-01-01T00:30:00Z"}, 400),  # its hour before: none either
        ({"key_id": "nope"}, 404),
        ({"key_id": theirs["key_id"]}, 404),
    ]:
        response = api.get("/v1/usage", params=params, headers=mine)
        assert response.status_code == status, (params, response.text)
        assert response.json()["error"]["code"] in {"VALIDATION_ERROR", "NOT_FOUND"}
    named = api.get("/v1/usage", params={"from": "yesterday"}, headers=mine).json()["error"]
    assert named["message"].endswith("(query: from)")  # as the client names it, not `start`
    ok = api.get("/v1/usage", headers=mine)
    assert ok.status_code == 200 and set(ok.json()) == {
        "account_id",
        "key_id",
        "from",
        "to",
        "minutes",
    }


def test_usage_tail_shows_requests_live(stack: Stack, api: httpx.Client) -> None:
    body = api.post("/v1/accounts").json()
    account, master = body["account_id"], body["master_key"]["key"]
    tail = subprocess.Popen(
        [str(BIN / "aitbc"), "usage", "tail", "--account", account, "--count", "3", "--json"],
        env={**stack.env(), "PATH": str(BIN)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ids = set()
        deadline = datetime.now(UTC) + timedelta(seconds=30)  # only a hang takes this long
        while tail.poll() is None and datetime.now(UTC) < deadline:
            ids.add(api.get("/v1/jobs", headers={"X-API-Key": master}).headers["x-request-id"])
            with contextlib.suppress(subprocess.TimeoutExpired):
                tail.wait(timeout=0.2)
        out, _ = tail.communicate(timeout=10)
    finally:
        tail.kill()
    lines = out.strip().splitlines()
    assert len(lines) == 3
    assert all(f'"account_id":"{account}"' in line for line in lines)
    assert all(any(rid in line for rid in ids) for line in lines)
