"""The edge's size limits, over real sockets: a request head over MAX_HEADER_BYTES is refused
with 431 whether it comes in one chunk or many (the chunk that completes the head counts too),
and a body over MAX_BODY_BYTES with 413 PAYLOAD_TOO_LARGE, on every kind of route."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e.stack import Stack

MAX_HEADER_BYTES = 64 * 1024  # the edge's default
MAX_BODY_BYTES = 10 * 1024 * 1024


def exchange(port: int, chunks: list[bytes], pause: float = 0.0) -> bytes:
    """Send each chunk as a write of its own (`pause` apart, so that each is a read of its own
    on the other side), then read the answer until the edge closes or has answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in chunks:
            conn.sendall(chunk)
            if pause:
                time.sleep(pause)
        return received(conn, until=lambda got: b"\r\n\r\n" in got and _whole(got))


def received(conn: socket.socket, until: Callable[[bytes], bool] = lambda _: False) -> bytes:
    """What the edge sends on `conn` until `until` holds of it, it closes, or a read times out."""
    got = b""
    while not until(got):
        try:
            data = conn.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        got += data
    return got


def _whole(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def status_and_code(raw: bytes) -> tuple[int, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    code = json.loads(body)["error"]["code"] if status >= 400 and body else ""
    return status, code


def head_of(size: int) -> bytes:
    """A GET of the public health route whose request line and headers are `size` bytes."""
    start = b"GET /v1/health HTTP/1.1\r\nhost: edge\r\n"
    end = b"\r\n\r\n"
    pad = size - len(start) - len(b"x-pad: ") - len(end)
    return start + b"x-pad: " + b"a" * pad + end


def port_of(stack: Stack) -> int:
    return stack.layout.api_port


@pytest.mark.parametrize("size", [100 * 1024, MAX_HEADER_BYTES + 200])
def test_a_head_over_the_limit_in_one_chunk_is_refused(stack: Stack, size: int) -> None:
    raw = exchange(port_of(stack), [head_of(size)])
    assert status_and_code(raw) == (431, "REQUEST_TOO_LARGE")


def test_a_head_over_the_limit_in_many_chunks_is_refused(stack: Stack) -> None:
    """Under the limit until its last chunk, which completes it: still 431."""
    head = head_of(MAX_HEADER_BYTES + 8 * 1024)
    first, last = head[: MAX_HEADER_BYTES - 4 * 1024], head[MAX_HEADER_BYTES - 4 * 1024 :]
    chunks = [first[i : i + 4096] for i in range(0, len(first), 4096)] + [last]
    raw = exchange(port_of(stack), chunks, pause=0.01)
    assert status_and_code(raw) == (431, "REQUEST_TOO_LARGE")


def test_a_head_under_the_limit_is_served(stack: Stack) -> None:
    size = MAX_HEADER_BYTES - 1024
    head = head_of(size)
    assert status_and_code(exchange(port_of(stack), [head])) == (200, "")
    chunks = [head[i : i + 4096] for i in range(0, len(head), 4096)]
    assert status_and_code(exchange(port_of(stack), chunks, pause=0.01)) == (200, "")


def test_a_second_request_over_the_limit_on_the_same_connection_is_refused(
    stack: Stack,
) -> None:
    """Pipelined behind a small request in the same chunk: its head is counted all the same."""
    small = b"GET /v1/health HTTP/1.1\r\nhost: edge\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port_of(stack)), timeout=15) as conn:
        conn.sendall(small + head_of(100 * 1024))
        got = received(conn)
    assert got.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 431" in got and b"REQUEST_TOO_LARGE" in got


def _chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // 65536 + 1):
        yield b"x" * 65536


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_has_its_own_code(
    api: httpx.Client, account: dict[str, str], chunked: bool
) -> None:
    key = {"X-API-Key": account["master"], "Content-Type": "application/json"}
    for path in ("/v1/jobs", "/v1/api-keys", "/v1/accounts"):
        content = _chunks(MAX_BODY_BYTES + 1) if chunked else b"x" * (MAX_BODY_BYTES + 1)
        response = api.post(path, content=content, headers=key)
        assert response.status_code == 413, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == "PAYLOAD_TOO_LARGE", path
        assert str(MAX_BODY_BYTES) in error["message"] or error["message"]
