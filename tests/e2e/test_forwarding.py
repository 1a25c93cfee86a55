"""Forwarding as the upstream sees it: no key, identity headers, streaming, and upstream faults."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from aitbc_contracts.identity import UpstreamIdentity
from aitbc_infra.nats_server import free_port
from tests.e2e.stack import Process, Stack
from tests.e2e.test_sizes import exchange, status_and_code


class RecordingUpstream:
    """A raw ASGI upstream that records what reaches it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.go_on = threading.Event()  # /v1/drip: the rest of the answer may come
        self.client_gone = threading.Event()  # /v1/endless: the edge hung up on it
        self.slow_may_answer = threading.Event()  # /v1/slow: not before the edge gave up

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] in ("/v1/drip", "/v1/endless"):
            await self.trickle(scope["path"], receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append(
            {
                "path": scope["path"],
                "query": scope["query_string"].decode(),
                "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                "header_names": [k.decode() for k, _ in scope["headers"]],
                "body": body,
            }
        )
        if scope["path"] == "/v1/slow":
            await asyncio.to_thread(self.slow_may_answer.wait, 60)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"x-upstream", b"yes")],
            }
        )
        for i in range(3):  # several chunks: the edge must pass them on as they come
            await send(
                {"type": "http.response.body", "body": f"chunk{i};".encode(), "more_body": True}
            )
        await send({"type": "http.response.body", "body": b"len=%d" % len(body)})

    async def trickle(self, path: str, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        if path == "/v1/drip":
            await asyncio.to_thread(self.go_on.wait, 10)
            await send({"type": "http.response.body", "body": b"rest"})
            return
        watching = asyncio.ensure_future(receive())  # http.disconnect when the edge hangs up
        for _ in range(3000):  # a minute of chunks: the edge hangs up long before
            done, _ = await asyncio.wait({watching}, timeout=0.02)
            if done:
                self.client_gone.set()
                return
            await send({"type": "http.response.body", "body": b"more;", "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RecordingUpstream, int]]:
    app = RecordingUpstream()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    yield app, port
    server.should_exit = True
    thread.join(5)


# Seconds the edge waits for the upstream: what /v1/slow takes to answer 504, and all that a
# loaded machine has for every other answer of these tests to come back whole.
UPSTREAM_TIMEOUT = 3


def _edge(stack: Stack, name: str, upstream_port: int) -> Process:
    upstream = f"http://127.0.0.1:{upstream_port}"
    return stack.add_edge(
        name, UPSTREAM_URL=upstream, UPSTREAM_TIMEOUT=str(UPSTREAM_TIMEOUT)
    ).start()


@pytest.fixture(scope="module")
def recorded_edge(stack: Stack, upstream: tuple[RecordingUpstream, int]) -> Iterator[str]:
    process = _edge(stack, "api-recorded", upstream[1])
    yield process.url
    process.stop()


def test_the_key_never_reaches_the_upstream_and_identity_does(
    stack: Stack,
    recorded_edge: str,
    upstream: tuple[RecordingUpstream, int],
    api: httpx.Client,
    account: dict[str, str],
) -> None:
    recorder, _ = upstream
    key = account["master"]
    spoofed = {
        "X-Account-Id": "acc_0000000000000000",
        "X-Key-Id": "key_0000000000000000",
        "X-AITBC-Identity": "v1;t=1;sig=" + "0" * 64,
        "X-Forwarded-For": "203.0.113.66",  # this edge trusts no proxy: its peer is the client
        "Forwarded": "for=203.0.113.66;proto=https",
        "X-Real-IP": "203.0.113.66",
    }
    with httpx.Client(base_url=recorded_edge) as client:
        by_query = client.get(
            "/v1/things", params={"api_key": key, "a": "1", "b": "x y"}, headers=spoofed
        )
        by_header = client.post("/v1/things", content=b"x" * 300_000, headers={"X-API-Key": key})
    assert by_query.status_code == by_header.status_code == 200
    assert by_query.text == "chunk0;chunk1;chunk2;len=0"
    assert by_header.text == "chunk0;chunk1;chunk2;len=300000"  # the body streamed through whole
    assert by_query.headers["x-upstream"] == "yes"
    first, second = recorder.seen[-2:]
    assert first["query"] == "a=1&b=x+y"
    for seen in (first, second):
        assert key not in repr(seen)
        assert "x-api-key" not in seen["headers"]
        assert seen["headers"]["x-account-id"] == account["account_id"]
        assert seen["headers"]["x-key-id"] == account["master_key_id"]
        assert seen["headers"]["x-request-id"]
        for name in ("x-account-id", "x-key-id", "x-request-id", "x-aitbc-identity",
                     "x-forwarded-for", "x-forwarded-proto"):  # fmt: skip
            assert seen["header_names"].count(name) == 1, name  # the edge's, not the client's
        assert (seen["headers"]["x-forwarded-for"], seen["headers"]["x-forwarded-proto"]) == (
            "127.0.0.1",
            "http",
        )
        assert "forwarded" not in seen["headers"] and "x-real-ip" not in seen["headers"]
        # signed with the secret the edge shares with the Coordinator, for this request
        shared = UpstreamIdentity(stack.layout.identity_secret_file.read_text())
        headers = seen["headers"]
        assert (
            shared.refusal(
                headers["x-account-id"],
                headers["x-key-id"],
                headers["x-request-id"],
                headers["x-aitbc-identity"],
                time.time(),
            )
            == ""
        )


def test_an_answer_streams_through_as_it_comes(
    recorded_edge: str, upstream: tuple[RecordingUpstream, int], account: dict[str, str]
) -> None:
    recorder, _ = upstream
    recorder.go_on.clear()
    with _streamed(recorded_edge, "/v1/drip", account) as response:
        chunks = response.iter_raw()
        assert next(chunks) == b"first;"  # while the upstream holds the rest back
        recorder.go_on.set()
        assert b"".join(chunks) == b"rest"
    assert response.headers["x-ratelimit-limit"]


def test_a_client_that_hangs_up_mid_answer_ends_the_upstream_request(
    recorded_edge: str, upstream: tuple[RecordingUpstream, int], account: dict[str, str]
) -> None:
    recorder, _ = upstream
    recorder.client_gone.clear()
    with _streamed(recorded_edge, "/v1/endless", account) as response:
        assert next(response.iter_raw()).startswith(b"first;")
    assert recorder.client_gone.wait(30)  # not after its minute of chunks: the edge hung up


@contextmanager
def _streamed(edge: str, path: str, account: dict[str, str]) -> Iterator[httpx.Response]:
    """A GET whose answer is read as it arrives; the connection closes on leaving."""
    with (
        httpx.Client(base_url=edge, timeout=10) as client,
        client.stream("GET", path, headers={"X-API-Key": account["master"]}) as response,
    ):
        yield response


def test_a_slow_upstream_answers_504(
    recorded_edge: str, upstream: tuple[RecordingUpstream, int], account: dict[str, str]
) -> None:
    recorder, _ = upstream
    recorder.slow_may_answer.clear()
    try:
        with httpx.Client(base_url=recorded_edge, timeout=30) as client:
            response = client.get("/v1/slow", headers={"X-API-Key": account["master"]})
    finally:
        recorder.slow_may_answer.set()
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "UPSTREAM_TIMEOUT"


def test_a_dead_upstream_answers_502(stack: Stack, account: dict[str, str]) -> None:
    process = _edge(stack, "api-dead-upstream", free_port())
    try:
        with httpx.Client(base_url=process.url) as client:
            response = client.get("/v1/jobs", headers={"X-API-Key": account["master"]})
            public = client.get("/v1/health")
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "UPSTREAM_UNAVAILABLE"
        assert public.status_code == 502
    finally:
        process.stop()


@pytest.mark.parametrize("method", ["GET", "DELETE", "OPTIONS"])
def test_a_body_on_a_bodyless_method_is_not_announced_upstream(
    recorded_edge: str,
    upstream: tuple[RecordingUpstream, int],
    account: dict[str, str],
    method: str,
) -> None:
    recorder, _ = upstream
    with httpx.Client(base_url=recorded_edge, timeout=30) as client:
        response = client.request(
            method, "/v1/things", content=b"hello", headers={"X-API-Key": account["master"]}
        )
    assert response.status_code == 200, response.text  # not 504 once the upstream gave up waiting
    assert response.text == "chunk0;chunk1;chunk2;len=0"  # the body is not forwarded
    assert "content-length" not in recorder.seen[-1]["headers"]


def test_a_chunked_body_s_trailer_is_no_header(
    recorded_edge: str, upstream: tuple[RecordingUpstream, int], account: dict[str, str]
) -> None:
    """Trailer fields come after the body: neither the gate nor the upstream takes them for
    headers (a key in one opens nothing, and nothing of them is forwarded)."""
    recorder, _ = upstream
    port = int(recorded_edge.rsplit(":", 1)[1])
    key = account["master"].encode()
    chunked = b"POST /v1/things HTTP/1.1\r\nhost: edge\r\nconnection: close\r\n%b"
    chunked += b"transfer-encoding: chunked\r\n\r\n"
    trailer = b"5\r\nhello\r\n0\r\nx-api-key: %b\r\nx-trailing: 1\r\n\r\n" % key
    seen = len(recorder.seen)
    refused = exchange(port, [chunked % b"" + trailer])
    assert status_and_code(refused) == (401, "MISSING_API_KEY")
    admitted = exchange(port, [chunked % (b"x-api-key: %b\r\n" % key) + trailer])
    assert status_and_code(admitted)[0] == 200
    (forwarded,) = recorder.seen[seen:]
    assert forwarded["body"] == b"hello"
    assert "x-trailing" not in forwarded["headers"]


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"gzip\r\ntransfer-encoding: chunked"])
def test_a_body_with_a_transfer_coding_besides_chunked_is_refused(
    recorded_edge: str,
    upstream: tuple[RecordingUpstream, int],
    account: dict[str, str],
    coding: bytes,
) -> None:
    """The server takes the chunks off and the coding is the hop's: forwarded, the upstream
    would take the gzip bytes for the body. 501, and nothing reaches the upstream."""
    recorder, _ = upstream
    port = int(recorded_edge.rsplit(":", 1)[1])
    head = b"POST /v1/things HTTP/1.1\r\nhost: edge\r\nconnection: close\r\n"
    head += b"x-api-key: %b\r\ntransfer-encoding: %b\r\n\r\n" % (account["master"].encode(), coding)
    seen = len(recorder.seen)
    refused = exchange(port, [head + b"5\r\nhello\r\n0\r\n\r\n"])
    assert status_and_code(refused) == (501, "VALIDATION_ERROR")
    assert recorder.seen[seen:] == []
