"""A forwarded path never leaves `/v1`: dot segments, encoded separators and double encoding
are refused (400 INVALID_PATH) before anything goes upstream, against the real sample
Coordinator, whose own `/schema/openapi.json` is what an escape would reach."""

from __future__ import annotations

import http.client
import json

import httpx
import pytest

from tests.e2e.stack import Stack

COORDINATOR_SCHEMA = "/schema/openapi.json"
COORDINATOR_TITLE = "AITBC Coordinator (sample)"

ESCAPES = [
    "/v1/jobs/%2e%2e/%2e%2e/schema/openapi.json",
    "/v1/jobs/%2E%2E/%2E%2E/schema/openapi.json",
    "/v1/%2e%2e/schema/openapi.json",
    "/v1/jobs/.%2e/.%2e/schema/openapi.json",
    "/v1/jobs/..%2F..%2Fschema/openapi.json",
    "/v1/jobs/..%2f..%2fschema%2fopenapi.json",
    "/v1/jobs%2F..%2F..%2Fschema/openapi.json",
    "/v1/jobs/%5c..%5c..%5cschema/openapi.json",
    "/v1/jobs/\\..\\..\\schema/openapi.json",
    "/v1/jobs/%252e%252e/%252e%252e/schema/openapi.json",
    "/v1/jobs/%3f/../../schema/openapi.json",
    "/v1/jobs%3F/../../schema/openapi.json",
    "/v1/jobs%23/../../schema/openapi.json",
    "/v1/../schema/openapi.json",
    "/v1/jobs/../../schema/openapi.json",
    "/v1/./jobs",
    "/v1/jobs/..",
]


def raw_get(url: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """GET `path` exactly as written: no client normalises it (httpx would drop dot segments)."""
    host_port = url.removeprefix("http://")
    conn = http.client.HTTPConnection(host_port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_the_coordinator_serves_its_schema_outside_v1(stack: Stack) -> None:
    """What an escape would reach: the sample Coordinator's own schema, outside /v1."""
    status, body = raw_get(stack.layout.upstream_url, COORDINATOR_SCHEMA, {})
    assert status == 200
    assert json.loads(body)["info"]["title"] == COORDINATOR_TITLE


@pytest.mark.parametrize("path", ESCAPES)
def test_a_path_that_would_leave_v1_is_refused(
    stack: Stack, account: dict[str, str], path: str
) -> None:
    status, body = raw_get(stack.api_url, path, {"X-API-Key": account["master"]})
    assert COORDINATOR_TITLE.encode() not in body
    assert status == 400, body
    error = json.loads(body)["error"]
    assert error["code"] == "INVALID_PATH" and error["message"]


@pytest.mark.parametrize("path", ["/v1/%2e%2e/schema/openapi.json", "/v1/../schema/openapi.json"])
def test_it_is_refused_without_a_key_too(stack: Stack, path: str) -> None:
    """The path is judged before the key: nothing leaves /v1, whoever asks."""
    status, body = raw_get(stack.api_url, path, {})
    assert status == 400, body
    assert json.loads(body)["error"]["code"] == "INVALID_PATH"


def test_ordinary_and_encoded_paths_are_forwarded_as_sent(
    stack: Stack, api: httpx.Client, account: dict[str, str]
) -> None:
    key = {"X-API-Key": account["master"]}
    job = api.post("/v1/jobs", json={"model": "echo", "input": "x"}, headers=key).json()
    # An encoded character that is no separator reaches the Coordinator as the same id.
    encoded = job["id"].replace("_", "%5F")
    status, body = raw_get(stack.api_url, f"/v1/jobs/{encoded}", key)
    assert status == 200, body
    assert json.loads(body)["id"] == job["id"]
    status, body = raw_get(stack.api_url, f"/v1/jobs/{job['id']}/results?x=..%2F..", key)
    assert status == 200, body  # a query may say anything: it is not the path
    listed = api.get("/v1/jobs", params={"status": "completed", "limit": "5"}, headers=key)
    assert listed.status_code == 200
    assert job["id"] in {j["id"] for j in listed.json()["jobs"]}
    status, _ = raw_get(stack.api_url, "/v1/jobs/..job", key)  # dots inside a segment: a name
    assert status == 404
