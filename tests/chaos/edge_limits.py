"""The edge's own limits under misbehaving clients (the upstream scenario's second half):
oversized bodies and headers, idle and trickling connections, more connections than it takes.
Each is answered with the error body (413/431/408/503) within bounded time."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx

from tests.chaos.load import Answer
from tests.chaos.report import Result

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
MAX_BODY = 64 * 1024
MAX_HEADER = 16 * 1024
MAX_CONNECTIONS = 300

# The settings that give an edge these limits.
EDGE_LIMITS = {
    "MAX_BODY_BYTES": str(MAX_BODY),
    "MAX_HEADER_BYTES": str(MAX_HEADER),
    "HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    "BODY_TIMEOUT": str(BODY_TIMEOUT),
    "MAX_CONNECTIONS": str(MAX_CONNECTIONS),
}


def raw_exchange(
    port: int, data: bytes, trickle: bytes = b"", every: float = 0.25, limit: float = 15
) -> tuple[bytes, float]:
    """Send `data`, then `trickle` one byte at a time; returns what the edge answered and when
    it closed the connection (or `limit` if it never did)."""
    started = time.monotonic()
    got = b""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.settimeout(every)
        try:
            if data:
                conn.sendall(data)
            sent = 0
            while time.monotonic() - started < limit:
                if trickle:
                    conn.sendall(trickle[sent % len(trickle) : sent % len(trickle) + 1])
                    sent += 1
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
    return got, time.monotonic() - started


def error_code(raw: bytes) -> str:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/1.1 ") else "?"
    code = ""
    if b'"code":"' in body:
        code = body.split(b'"code":"', 1)[1].split(b'"', 1)[0].decode()
    return f"{status} {code}".strip()


def slow_clients(result: Result, port: int, key: str) -> list[Answer]:
    """Oversized and trickling clients: each answered with the error body in bounded time."""
    answers = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        auth = {"X-API-Key": key}
        big = client.post("/v1/jobs", content=b"x" * (MAX_BODY + 1), headers=auth)

        def chunks() -> Iterator[bytes]:
            for _ in range(MAX_BODY // 4096 + 2):
                yield b"x" * 4096

        chunked = client.post("/v1/jobs", content=chunks(), headers=auth)
        for name, response in (("body", big), ("chunked body", chunked)):
            code = response.json()["error"]["code"] if response.status_code >= 400 else ""
            result.expect(
                response.status_code == 413 and code == "PAYLOAD_TOO_LARGE",
                f"{name} over the limit: {response.status_code} {code}",
            )
            answers.append(Answer(name, None, 0, 0, response.status_code, code, "", "", 0))
    bound = HEADER_TIMEOUT + 1.5
    request = b"GET /v1/jobs HTTP/1.1\r\nhost: edge\r\n"
    cases = {
        "huge header": (request + b"x-big: " + b"a" * MAX_HEADER * 4, b"", "431 REQUEST_TOO_LARGE"),
        "idle connection": (b"", b"", "408 REQUEST_TIMEOUT"),
        "trickled headers": (request, b"x-slow: " + b"a" * 100, "408 REQUEST_TIMEOUT"),
        "trickled body": (
            b"POST /v1/jobs HTTP/1.1\r\nhost: edge\r\ncontent-length: 1000\r\nx-api-key: "
            + key.encode() + b"\r\n\r\n",
            b"x",
            "408 REQUEST_TIMEOUT",
        ),
    }  # fmt: skip
    for name, (data, trickle, expect) in cases.items():
        raw, took = raw_exchange(port, data, trickle)
        got = error_code(raw) if raw else "nothing"
        result.expect(got == expect, f"{name}: answered {got}, not {expect}")
        limit = bound if name != "trickled body" else BODY_TIMEOUT + 1.5
        result.expect(took <= limit, f"{name}: connection held {took:.1f}s")
        result.notes.append(f"{name}: {got}, closed after {took:.1f}s")
        status, _, code = got.partition(" ")
        answers.append(
            Answer(name, None, 0, 0, int(status) if status.isdigit() else 0, code, "", "", 0)
        )
    return answers


def connection_cap(result: Result, port: int) -> None:
    """Connections beyond MAX_CONNECTIONS are answered 503 with the error body and closed."""
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):
            held.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(0.2)
        raw, _ = raw_exchange(port, b"GET /v1/health HTTP/1.1\r\nhost: edge\r\n\r\n", limit=5)
    finally:
        for conn in held:
            conn.close()
    got = error_code(raw) if raw else "nothing"
    result.expect(got == "503 SERVICE_UNAVAILABLE", f"connection over the cap: {got}")
    result.notes.append(f"connection {MAX_CONNECTIONS + 1}: {got}")
