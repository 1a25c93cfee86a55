"""Bad input gets a 4xx with the error body, never a 500."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_sizes import exchange, port_of, received, status_and_code


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"name": 5}',
        b'{"name": "ok", "unknown": 1}',
        b'{"name": ""}',
        b'{"name": "' + b"x" * 101 + b'"}',
        b'{"name": "ok", "expires_at": "yesterday"}',
        b'{"name": "ok", "rate_limit": -3}',
        b"[]",
        b"\xff\xfe",
    ],
)
def test_bad_bodies_on_create_key(api: httpx.Client, account: dict[str, str], body: bytes) -> None:
    response = api.post(
        "/v1/api-keys",
        content=body,
        headers={"X-API-Key": account["master"], "Content-Type": "application/json"},
    )
    assert_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "expires_at",
    [
        "2020-01-01T00:00:00Z",
        "9999-12-31T23:59:59-05:00",  # past the last instant a UTC time can name
        "0001-01-01T00:30:00+01:00",  # before the first
    ],
)
def test_a_past_or_unreachable_expiry_is_refused(
    api: httpx.Client, account: dict[str, str], expires_at: str
) -> None:
    response = api.post(
        "/v1/api-keys",
        json={"name": "late", "expires_at": expires_at},
        headers={"X-API-Key": account["master"]},
    )
    assert_error(response, 400, "VALIDATION_ERROR")


def test_bad_bodies_on_sign_up_and_regenerate(api: httpx.Client, account: dict[str, str]) -> None:
    assert_error(api.post("/v1/accounts", json={"plan": "enterprise"}), 400, "VALIDATION_ERROR")
    assert_error(api.post("/v1/accounts", content=b"{{"), 400, "VALIDATION_ERROR")
    key_id = api.get("/v1/api-keys", headers={"X-API-Key": account["master"]}).json()["keys"][0][
        "key_id"
    ]
    for body in [{"grace_period_seconds": -1}, {"grace_period_seconds": "soon"}, {"grace": 1}]:
        response = api.post(
            f"/v1/api-keys/{key_id}/regenerate", json=body, headers={"X-API-Key": account["master"]}
        )
        assert_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "key_id",
    ["nope", "key_", "key_ZZZZZZZZZZZZZZZZ", "key_0123456789abcdef0", "%00", "..%2F..%2Fetc"],
)
def test_bad_key_ids_are_not_found(api: httpx.Client, account: dict[str, str], key_id: str) -> None:
    response = api.get(f"/v1/api-keys/{key_id}", headers={"X-API-Key": account["master"]})
    assert_error(response, 404, "NOT_FOUND")


def test_non_ascii_and_huge_headers(api: httpx.Client) -> None:
    non_ascii = api.get("/v1/jobs", headers={"X-API-Key": "aitbc_ключ".encode()})
    assert_error(non_ascii, 401, "INVALID_API_KEY")
    huge = api.get("/v1/jobs", headers={"X-API-Key": "a" * 8000})
    assert_error(huge, 401, "INVALID_API_KEY")
    bigger = api.get("/v1/jobs", headers={"X-Other": "a" * 20000})
    assert 400 <= bigger.status_code < 500


def test_wrong_methods_and_unknown_routes(api: httpx.Client, account: dict[str, str]) -> None:
    assert_error(
        api.put("/v1/api-keys", headers={"X-API-Key": account["master"]}), 405, "METHOD_NOT_ALLOWED"
    )
    assert_error(api.get("/v2/jobs"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "framing",
    [
        b"content-length: 5\r\ncontent-length: 6\r\n",
        b"content-length: 5\r\ntransfer-encoding: chunked\r\n",
        b"content-length: +5\r\n",
        b"x-odd: a\x01b\r\n",
        b"transfer-encoding: chunked\r\n",  # "hello!" is no chunk size: the body breaks off
    ],
)
def test_a_request_the_parser_refuses_gets_the_error_body(stack: Stack, framing: bytes) -> None:
    head = b"POST /v1/jobs HTTP/1.1\r\nhost: edge\r\n" + framing + b"\r\nhello!"
    assert status_and_code(exchange(port_of(stack), [head])) == (400, "VALIDATION_ERROR")


def test_a_malformed_request_behind_a_good_one_is_answered_after_it(stack: Stack) -> None:
    good = b"GET /v1/health HTTP/1.1\r\nhost: edge\r\n\r\n"
    bad = b"GET /v1/health HTTP/1.1\r\nhost: edge\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port_of(stack)), timeout=15) as conn:
        conn.sendall(good + bad)
        got = received(conn)
    first, _, second = got.partition(b"HTTP/1.1 400")
    assert first.startswith(b"HTTP/1.1 200")
    assert b"VALIDATION_ERROR" in second


def test_a_body_nested_too_deeply_is_refused_on_every_route_with_a_body(
    api: httpx.Client, account: dict[str, str]
) -> None:
    master = {"X-API-Key": account["master"], "Content-Type": "application/json"}
    key_id = api.get("/v1/api-keys", headers=master).json()["keys"][0]["key_id"]
    deep = b"[" * 100_000
    for method, path, headers in [
        ("POST", "/v1/accounts", {"Content-Type": "application/json"}),
        ("POST", "/v1/api-keys", master),
        ("PATCH", f"/v1/api-keys/{key_id}", master),
        ("POST", f"/v1/api-keys/{key_id}/regenerate", master),
        ("PATCH", "/v1/account", master),
    ]:
        response = api.request(method, path, content=deep, headers=headers)
        assert_error(response, 400, "VALIDATION_ERROR")
