"""One keep-alive HTTP/1.1 connection to the upstream: it writes a request's head (and body)
and parses the answer with httptools (llhttp, the parser the edge's server uses for requests).

Why not aiohttp, which the edge used until now: the edge talks to one origin, always HTTP/1.1,
and passes bodies through untouched; aiohttp's general client (request and response objects,
URL handling, cookie jar, connector bookkeeping, payload writers) cost 45 us of the 128 us the
edge spent per forwarded request, where this costs about a fifth of that
(bench/results/ANALYSIS.md, session 15). What it leaves out is what the edge never asks of it:
redirects, cookies, decompression, proxies, HTTP/2.

One exchange at a time. The answer's head is handed over once the data that carried it is
parsed, so an answer that came whole in one read is relayed in one message. A body that comes
later is buffered up to HIGH_WATER bytes, past which reading pauses until the relay takes it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import cast

import httptools

HIGH_WATER = 256 * 1024  # buffered answer bytes past which the socket's reading pauses
# Bytes of an answer read since its last body byte (heads, interim answers, chunk framing,
# trailers) past which it is refused: the parser would buffer an endless head, and the read
# timeout, started again by each byte, would never end endless interim answers.
MAX_FRAMING = 64 * 1024


class UpstreamFailed(Exception):
    """No whole answer: the connection could not be made, broke, or carried no valid HTTP."""


class UpstreamTimedOut(UpstreamFailed):
    """The upstream took longer than its timeout to connect, to send its answer's whole head
    (interim answers included), or to send its body's next bytes."""


class UpstreamConnection(asyncio.Protocol):
    """The protocol of one connection; `UpstreamPool` owns it, `UpstreamResponse` reads it."""

    __slots__ = (
        "_framing",
        "_head",
        "_head_only",
        "_on_lost",
        "_parser",
        "_paused",
        "_timeout",
        "_timer",
        "_wake",
        "_writable",
        "body",
        "buffered",
        "busy",
        "closed",
        "complete",
        "error",
        "headers",
        "idle_since",
        "reusable",
        "status",
        "transport",
    )  # fmt: skip

    def __init__(self, timeout: float, on_lost: Callable[[UpstreamConnection], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.busy = False  # an exchange is under way (the pool's to set and clear)
        self.closed = False
        self.idle_since = 0.0
        self._on_lost = on_lost
        self._parser = httptools.HttpResponseParser(self)
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._head: asyncio.Future[None] | None = None  # the exchange's head, once parsed
        self._wake: asyncio.Future[None] | None = None  # a body reader waiting for bytes
        self._writable: asyncio.Future[None] | None = None  # a body writer waiting to drain
        self._paused = False
        self._reset(head_only=False)

    def _reset(self, head_only: bool) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.buffered = 0
        self.complete = False
        self.reusable = False
        self.error: UpstreamFailed | None = None
        self._framing = 0
        self._head_only = head_only  # a HEAD request's answer: a head and nothing after it

    # The exchange, as the pool and the response drive it.

    def send(self, head: bytes, head_only: bool, whole: bool = True) -> asyncio.Future[None]:
        """Writes a request's head (and a body already whole); the answer's head, awaitable.
        The upstream's time to answer starts once the request is `whole` (else: `written`):
        it cannot answer a body still coming, which the client's own deadline bounds."""
        assert self.transport is not None
        self._reset(head_only)
        self._head = head_ready = asyncio.get_running_loop().create_future()
        if whole:
            self._arm()
        self.transport.write(head)
        return head_ready

    def written(self) -> None:
        """The streamed body's end is written: the upstream's time to answer starts."""
        if not self.complete and self._timer is None and not self._paused:
            self._arm()

    async def write(self, chunk: bytes) -> None:
        """More of a streamed request body, after the head; waits while the socket is full,
        at most the upstream's timeout (an upstream that stops reading is one that failed)."""
        self._raise_if_closed()
        assert self.transport is not None
        self.transport.write(chunk)
        if self._writable is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._writable
            except TimeoutError:
                raise UpstreamTimedOut("the upstream stopped reading the request") from None
            self._raise_if_closed()

    def _raise_if_closed(self) -> None:
        if self.closed:
            raise self.error or UpstreamFailed("the upstream closed the connection")

    async def more(self) -> None:
        """Waits for more of the answer's body (or its end, or a failure)."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
            self._arm()  # the upstream's time runs again once it may send
        self._wake = asyncio.get_running_loop().create_future()
        await self._wake

    def finished(self) -> bool:
        """Whether another exchange may follow on this connection (its answer whole, kept
        alive); what is left of the answer is let go either way."""
        self.body, self.headers, self.buffered = [], [], 0
        return self.complete and self.reusable and not self.closed

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True

    def _arm(self) -> None:
        """The timeout, started again: the upstream must send its answer's whole head, or once
        the head is in, its body's next bytes, before it."""
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(UpstreamTimedOut("the upstream did not answer in time"))
        self.abort()

    def _fail(self, error: UpstreamFailed) -> None:
        """Ends the exchange with `error` unless its answer is whole; every waiter is woken
        and finds the error itself (no future ever holds an exception nobody might read)."""
        if self.error is None and not self.complete:
            self.error = error
        self._wake_all()

    def _wake_all(self) -> None:
        for waiter in (self._head, self._wake, self._writable):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self._head = self._wake = self._writable = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is no subclass)

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.complete:  # bytes nobody asked for: never trusted again
            self.reusable = False
            self.abort()
            return
        self._framing += len(data)  # (each body byte sets it back to 0)
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):  # (no subclass of it)
            self._refuse("the upstream's answer is not valid HTTP")
            return
        if self._framing > MAX_FRAMING and not self.complete:
            self._refuse("the upstream's answer has too long a head or trailer")
            return
        if self.status and self._head is not None:  # the head (and maybe all the body) is in
            if not self._head.done():  # (done: its request was cancelled)
                self._head.set_result(None)
            self._head = None
        if self.complete:
            self._disarm()
            if self._head_only:  # the parser would wait for the body the head announced
                self._parser = httptools.HttpResponseParser(self)
        elif self._timer is not None and self.status:
            self._arm()  # the body's next bytes; the head's deadline stays whole, not per byte
        if self._wake is not None:
            if not self._wake.done():
                self._wake.set_result(None)
            self._wake = None
        if self.buffered > HIGH_WATER and not self.complete and not self._paused:
            self._paused = True
            assert self.transport is not None
            self.transport.pause_reading()
            self._disarm()  # the relay is behind, not the upstream

    def _refuse(self, reason: str) -> None:
        """Bytes not to be trusted: the exchange ends (an answer whole before them is still
        relayed) and so does the connection."""
        self._fail(UpstreamFailed(reason))
        self.reusable = False
        self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self.status and not self.complete and exc is None and self._ends_at_close():
            self.complete = True  # an answer delimited by the connection's end (not a reset)
        self._fail(UpstreamFailed("the upstream closed the connection"))
        self._on_lost(self)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request: nothing to believe from here on
            raise UpstreamFailed("the upstream sent more than one answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.status:  # (after the head: a chunked answer's trailer, never relayed)
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103): the final one follows
            self.headers = []
            return
        if any(self._codings()):  # the edge could pass on neither the coding nor its bytes
            raise UpstreamFailed("the upstream's answer has a transfer coding besides chunked")
        self.status = status
        if self._head_only:
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        if self.status:
            self.body.append(body)
            self.buffered += len(body)
            self._framing = 0

    def on_message_complete(self) -> None:
        if self.status and not self.complete:
            self.complete = True
            self.reusable = self._parser.should_keep_alive()

    def _codings(self) -> Iterator[bytes]:
        """The answer's transfer codings other than chunked (hop-by-hop: the client is told
        none of them)."""
        for name, value in self.headers:
            if name.lower() == b"transfer-encoding":
                for coding in value.split(b","):
                    if coding.strip().lower() not in (b"chunked", b""):
                        yield coding

    def _ends_at_close(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names
