"""The edge's HTTP/1.1 connections: uvicorn's httptools protocol, with the limits it lacks.

With httptools, uvicorn bounds neither the time a client may take to send a request head nor
the head's size: a client that connects and sends nothing, or trickles its headers a byte at
a time, holds a connection for ever, and an endless header grows the server's memory without
end. This protocol gives each head a deadline and a size cap, caps the connections of the
process, and answers each with the error body, then closes the connection. A head is counted
twice over: chunk by chunk while it is incomplete (an endless header is cut off as it grows),
and once whole, as parsed, before it goes to the application (so the chunk that completes it
counts too, and so does a head pipelined behind another request in the same chunk).
(A slow request body is bounded in the middleware, where the application reads it.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aitbc_contracts.messages import Code, ErrorBody, ErrorDetail

_REASONS = {
    400: b"Bad Request",
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
        self._head_bytes = 0  # of the head under way, in the chunks before the current one
        self._chunk_bytes = 0  # the chunk being parsed
        self._refused = False  # answered (or to be): nothing more is parsed into a request
        self._last_answer = b""
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
        if self._refused:
            return  # not even buffered by the parser: the answer is given, or about to be
        self._chunk_bytes = len(data)
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)  # all of it is head: the head is not complete yet
            if self._head_bytes > self.max_head_bytes:
                self._head_too_large()

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        self._arm()

    def on_headers_complete(self) -> None:
        """The head is whole: it goes to the application unless it is over the limit. Its
        size is counted only when it could be: the chunks so far and this one exceed it."""
        if self._refused:
            return
        self._in_head = False
        self._disarm()
        if self._head_bytes + self._chunk_bytes > self.max_head_bytes and (
            self._parsed_head_bytes() > self.max_head_bytes
        ):
            self._head_too_large()
            return
        super().on_headers_complete()
        # A chunked body's trailer fields come through on_header too, after the head went to
        # the application: they are no headers, and uvicorn would add them to the list the
        # request's scope holds, where a key or a forwarding header in one would be believed.
        # A list of their own (per request, cheaper than a check per header) keeps them out;
        # an upgrade has no body, and uvicorn reads its headers again to take it.
        if not self.parser.should_upgrade():
            self.headers = []

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """A request the parser refused (two Content-Lengths, Content-Length with
        Transfer-Encoding, a control byte in a header...): 400 with the error body, not
        uvicorn's plain text; after the answers to the requests before it, if any. A body that
        broke off mid-way has no answer to wait for: its connection closes at once."""
        message = "The request is not valid HTTP/1.1: its framing or a header cannot be read"
        if self.cycle is not None and self.cycle.more_body:
            self._refused = True
            if not self.cycle.response_started:
                self.transport.write(raw_error(400, Code.VALIDATION_ERROR, message))
            self.transport.close()
            return
        self._refuse(400, Code.VALIDATION_ERROR, message)

    def _parsed_head_bytes(self) -> int:
        """The head as the parser read it: the request line (method and version: about 14
        bytes more than its target) and `name: value` CRLF per header."""
        return 14 + len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) + 2

    def _head_too_large(self) -> None:
        self._refuse(
            431,
            Code.REQUEST_TOO_LARGE,
            f"The request line and headers exceed {self.max_head_bytes} bytes",
        )

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
        """Answer `status` and close; after the responses already on their way, if any (a
        request pipelined behind others). Nothing the client sends from now on is parsed."""
        self._in_head, self._refused = False, True
        self._disarm()
        self._last_answer = raw_error(status, code, message)
        if self.cycle is None or self.cycle.response_complete:
            self._answer_and_close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refused and self.cycle is not None and self.cycle.response_complete:
            self._answer_and_close()

    def _answer_and_close(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(self._last_answer)
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
