"""Where a key may be presented: the X-API-Key header, or the `api_key` query parameter unless
API_KEY_IN_QUERY=0; two different keys at once are refused (400), whichever would have won.
A query string is never logged, nor recorded in a usage event."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.stack import Process, Stack
from tests.e2e.usage_stream import usage_events, wait_for


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


@pytest.fixture
def second_key(api: httpx.Client, account: dict[str, str]) -> str:
    made = api.post("/v1/api-keys", json={"name": "two"}, headers={"X-API-Key": account["master"]})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def test_a_header_key_and_a_different_query_key_are_refused(
    api: httpx.Client, account: dict[str, str], second_key: str
) -> None:
    master = account["master"]
    both = api.get("/v1/jobs", params={"api_key": second_key}, headers={"X-API-Key": master})
    assert_error(both, 400, "CONFLICTING_API_KEYS")
    # on the edge's own routes too, and a misspelt (encoded) name is the same parameter
    listed = api.get("/v1/api-keys?api%5Fkey=" + second_key, headers={"X-API-Key": master})
    assert_error(listed, 400, "CONFLICTING_API_KEYS")
    twice = api.get("/v1/jobs", params=[("api_key", master), ("api_key", second_key)])
    assert_error(twice, 400, "CONFLICTING_API_KEYS")
    # the same key twice is one credential
    same = api.get("/v1/jobs", params={"api_key": master}, headers={"X-API-Key": master})
    assert same.status_code == 200, same.text
    assert api.get("/v1/jobs", params={"api_key": second_key}).status_code == 200
    assert api.get("/v1/jobs", headers={"X-API-Key": second_key}).status_code == 200


@pytest.fixture(scope="module")
def header_only_edge(stack: Stack) -> Iterator[Process]:
    process = stack.add_edge("api-header-only", API_KEY_IN_QUERY="0").start()
    yield process
    process.stop()


def test_with_query_keys_turned_off_a_query_key_is_refused(
    header_only_edge: Process, account: dict[str, str]
) -> None:
    master = account["master"]
    with httpx.Client(base_url=header_only_edge.url, timeout=10) as client:
        by_query = client.get("/v1/jobs", params={"api_key": master})
        assert_error(by_query, 400, "API_KEY_IN_QUERY_DISABLED")
        assert "X-API-Key" in by_query.json()["error"]["message"]
        both = client.get("/v1/jobs", params={"api_key": master}, headers={"X-API-Key": master})
        assert_error(both, 400, "API_KEY_IN_QUERY_DISABLED")
        assert client.get("/v1/jobs", headers={"X-API-Key": master}).status_code == 200
        assert client.get("/v1/jobs", params={"status": "queued"}, headers={"X-API-Key": master})
        schema = client.get("/schema/openapi.json").json()
        assert "ApiKeyQuery" not in schema["components"]["securitySchemes"]


@pytest.fixture(scope="module")
def debug_edge(stack: Stack) -> Iterator[Process]:
    """An edge that logs everything it logs at all."""
    process = stack.add_edge("api-debug", LOG_LEVEL="DEBUG").start()
    yield process
    process.stop()


def test_a_query_string_is_never_logged_nor_recorded(
    stack: Stack, debug_edge: Process, account: dict[str, str], second_key: str
) -> None:
    marker = "qmarker7f3a9c"
    master = account["master"]
    with httpx.Client(base_url=debug_edge.url, timeout=10) as client:
        asked = [
            client.get("/v1/jobs", params={"api_key": master, "q": marker}),  # 200
            client.get("/v1/jobs", params={"api_key": second_key, "q": marker}),
            client.get("/v1/jobs/nope", params={"q": marker}, headers={"X-API-Key": master}),
            client.get("/v1/jobs", params={"api_key": "aitbc_" + marker, "q": marker}),  # 401
            client.get("/v1/jobs", params={"api_key": second_key, "q": marker},
                       headers={"X-API-Key": master}),  # 400 CONFLICTING_API_KEYS
            client.get("/v1/api-keys", params={"q": marker}, headers={"X-API-Key": master}),
            client.get("/v2/nothing", params={"q": marker}),  # 404 of the edge
            client.get("/v1/jobs/%2e%2e", params={"q": marker}),  # 400 INVALID_PATH
            client.get("/dashboard/", params={"q": marker}),
        ]  # fmt: skip
    assert [r.status_code for r in asked][:5] == [200, 200, 404, 401, 400]
    events = wait_for(
        lambda: (
            (e := usage_events(stack.nats.access("auditor"), account["account_id"]))
            and len(e) >= 5
            and e
        )
    )
    assert events
    assert marker not in repr(events)
    logs = stack.logs()
    assert "api-debug" in str(debug_edge.log_file) and debug_edge.log_file.read_text()
    assert marker not in logs, [line for line in logs.splitlines() if marker in line]
