"""The edge's HTTP/1.1 connections: uvicorn's httptools protocol, with the limits it lacks.

With httptools, uvicorn bounds neither the time a client may take to send a request head nor
the head's size: a client that connects and sends nothing, or trickles its headers a byte at
a time, holds a connection for ever, and an endless header grows the server's memory without
end. This protocol gives each head a deadline and a size cap, caps the connections of the
process, and answers each with the error body, then closes the connection.
(A slow request body is bounded in the middleware, where the application reads it.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aitbc_api.errors import ErrorBody, ErrorDetail
from aitbc_contracts.messages import Code

_REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def raw_error(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 error response with the error body, closing the connection."""
    body = msgspec.json.encode(ErrorBody(ErrorDetail(code, message)))
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
        status,
        _REASONS[status],
        len(body),
    )
    return head + b"connection: close\r\n\r\n" + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """One connection. The class attributes are set by `guarded_protocol`."""

    head_timeout = 10.0  # seconds from connection (or a request's first byte) to its last header
    max_head_bytes = 64 * 1024  # request line and headers
    max_connections = 4096  # per process; beyond, a new connection is answered 503 and closed

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        over = len(self.connections) >= self.max_connections
        super().connection_made(transport)
        if over:
            self._refuse(503, Code.SERVICE_UNAVAILABLE, "Too many connections; try again shortly")
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)  # all of it is head: the head is not complete yet
            if self._head_bytes > self.max_head_bytes:
                self._refuse(
                    431,
                    Code.REQUEST_TOO_LARGE,
                    f"The request line and headers exceed {self.max_head_bytes} bytes",
                )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, Code.REQUEST_TIMEOUT, "The request headers did not arrive in time")

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._in_head = False
        self._disarm()
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(raw_error(status, code, message))
        # else a response is on its way on this connection: cutting it off is all we can do
        self.transport.close()


def guarded_protocol(
    head_timeout: float, max_head_bytes: int, max_connections: int
) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, with these limits."""
    return type(
        "EdgeHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "head_timeout": head_timeout,
            "max_head_bytes": max_head_bytes,
            "max_connections": max_connections,
        },
    )
