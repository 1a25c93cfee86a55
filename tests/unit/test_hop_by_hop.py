"""What of a request's and an answer's headers crosses the edge: never the hop-by-hop ones,
including those a Connection header names (RFC 9110 section 7.6.1)."""

from __future__ import annotations

from typing import Any

from aitbc_api.proxy.forward import _upstream_headers
from aitbc_api.proxy.relay import Relay


def test_a_request_loses_its_hop_by_hop_headers_and_those_its_connection_names() -> None:
    scope = {
        "headers": [
            (b"connection", b"close, X-Hop-Secret ,keep-alive"),
            (b"x-hop-secret", b"for the edge only"),
            (b"proxy-connection", b"keep-alive"),
            (b"x_account_id", b"acc_forged"),  # X-Account-Id to a CGI-style upstream
            (b"x-kept", b"1"),
            (b"content-length", b"3"),
        ]
    }
    assert _upstream_headers(scope, 10) == ([(b"x-kept", b"1")], 3)


class _Answer:
    status = 200
    whole = True
    headers = [
        (b"Connection", b"X-Hop-Secret"),
        (b"X-Hop-Secret", b"for the edge only"),
        (b"Proxy-Connection", b"keep-alive"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    ]

    def read_now(self) -> bytes:
        return b""

    def release(self) -> None:
        pass


async def test_an_answer_loses_its_hop_by_hop_headers_and_those_its_connection_names() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        raise AssertionError("a whole answer waits for nothing")

    await Relay(_Answer())({}, receive, send)  # type: ignore[arg-type]
    assert sent[0]["headers"] == [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
