"""The edge's keep-alive connections to its one upstream (aitbc_api.proxy.upstream_connection
says why they are the edge's own), and the answers they carry back.

A request goes on the connection used last (its socket and buffers are warm) or a new one, up
to `limit` at once; past that it waits for one, at most the read timeout. A connection idle
longer than `keepalive` is closed instead of used. An idempotent request whose reused
connection turns out to have been closed by the upstream as it went out (nothing of an answer
came back) is sent once more on a new connection, as RFC 9110 section 9.2.2 allows."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from aitbc_api.proxy.upstream_connection import (
    UpstreamConnection,
    UpstreamFailed,
    UpstreamTimedOut,
)
from aitbc_api.proxy.upstream_response import UpstreamResponse
from aitbc_runtime.process import cancel_and_wait

__all__ = ["UpstreamFailed", "UpstreamPool", "UpstreamResponse", "UpstreamTimedOut"]

Body = bytes | AsyncIterator[bytes] | None
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class UpstreamPool:
    """Connections to the origin of `url` (http or https; its path, if any, goes before each
    request's target)."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float,
        timeout: float,
        limit: int = 512,
        keepalive: float = 4.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the upstream URL must be http:// or https://host[:port]: {url!r}")
        tls = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port or (443 if tls else 80)
        self._ssl = ssl.create_default_context() if tls else None
        self._prefix = parts.path.rstrip("/").encode("ascii")
        default_port = parts.port is None or parts.port == (443 if tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_line = f"host: {host if default_port else f'{host}:{self.port}'}\r\n".encode()
        self._connect_timeout, self._timeout = connect_timeout, timeout
        self._limit, self._keepalive = limit, keepalive
        self._idle: deque[UpstreamConnection] = deque()
        self._live: set[UpstreamConnection] = set()  # made and not yet lost
        self._connecting = 0
        self._waiting: deque[asyncio.Future[None]] = deque()  # requests waiting for one
        self._closed = False

    async def request(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: Body = None,
        length: int | None = None,
    ) -> UpstreamResponse:
        """`method` `target` (path and query, as sent) with `headers` (without the framing ones,
        which this writes: Content-Length, or Transfer-Encoding: chunked for a streamed body of
        no declared `length`). ApiError from the body's own reading passes through."""
        streamed = body is not None and not isinstance(body, bytes)
        head = self._head(method, target, headers, body, length)
        connection, reused = await self._acquire()
        try:
            return await self._exchange(connection, method, head, body, length)
        except UpstreamTimedOut:
            raise
        except UpstreamFailed:
            if not reused or streamed or method not in _IDEMPOTENT or connection.status:
                raise
        connection, _ = await self._acquire(fresh=True)
        return await self._exchange(connection, method, head, body, length)

    def _head(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        length: int | None,
    ) -> bytes:
        parts = [method.encode("ascii"), b" ", self._prefix, target, b" HTTP/1.1\r\n"]
        parts.append(self._host_line)
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if isinstance(body, bytes):
            length = len(body)
        if length is not None:
            parts += (b"content-length: ", b"%d" % length, b"\r\n")
        elif body is not None:
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        if isinstance(body, bytes):
            parts.append(body)  # a body already whole goes in the same write
        return b"".join(parts)

    async def _exchange(
        self,
        connection: UpstreamConnection,
        method: str,
        head: bytes,
        body: Body,
        length: int | None,
    ) -> UpstreamResponse:
        connection.busy = True
        writer = None
        try:
            streamed = body is not None and not isinstance(body, bytes)
            answered = connection.send(head, head_only=method == "HEAD", whole=not streamed)
            if streamed:
                assert body is not None and not isinstance(body, bytes)
                writer = asyncio.ensure_future(_write_body(connection, body, length is None))
                writer.add_done_callback(_retrieved)
                await asyncio.wait((answered, writer), return_when=asyncio.FIRST_COMPLETED)
                if writer.done() and writer.exception() is not None and not connection.status:
                    writer.result()  # the client's body failed (413, 408...): its error
            await answered
            if connection.error is not None and not connection.status:
                raise connection.error
        except BaseException:
            if writer is not None and not writer.done():
                await cancel_and_wait([writer])
            self.release(connection, writer, failed=True)
            raise
        return UpstreamResponse(connection, self, writer)

    async def _acquire(self, fresh: bool = False) -> tuple[UpstreamConnection, bool]:
        """A connection (reused: True) from the idle ones, or a new one within the limit."""
        loop = asyncio.get_running_loop()
        while True:
            while self._idle and not fresh:
                connection = self._idle.pop()
                if connection.closed:
                    continue
                if loop.time() - connection.idle_since > self._keepalive:
                    connection.abort()
                    continue
                return connection, True
            if len(self._live) + self._connecting < self._limit:
                break
            waiter = loop.create_future()
            self._waiting.append(waiter)
            try:
                async with asyncio.timeout(self._timeout):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken for a connection it will not take: the next's
                if isinstance(exc, TimeoutError):
                    raise UpstreamTimedOut(
                        "no connection to the upstream came free in time"
                    ) from None
                raise
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
        self._connecting += 1
        try:
            connection = await self._connect(loop)
        except BaseException:
            self._wake_one()  # (after the count below is down: the waiter runs later)
            raise
        finally:
            self._connecting -= 1
        if connection.closed:  # lost as it was made
            self._wake_one()
            raise UpstreamFailed("the upstream closed the connection at once")
        self._live.add(connection)
        return connection, False

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> UpstreamConnection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(self._timeout, self._lost),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except TimeoutError:
            raise UpstreamTimedOut("the upstream took too long to accept a connection") from None
        except OSError as exc:
            raise UpstreamFailed(f"no connection to the upstream: {exc.strerror}") from None
        return connection

    def release(
        self,
        connection: UpstreamConnection,
        writer: asyncio.Task[None] | None,
        failed: bool = False,
    ) -> None:
        """A finished exchange's connection: kept for the next request if its answer was read
        whole and its request written whole, else closed."""
        connection.busy = False
        written = writer is None or (
            writer.done() and not writer.cancelled() and not writer.exception()
        )
        if writer is not None and not writer.done():
            writer.cancel()
        if failed or self._closed or not connection.finished() or not written:
            connection.abort()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        self._idle.append(connection)
        self._wake_one()

    def _lost(self, connection: UpstreamConnection) -> None:
        self._live.discard(connection)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().abort()


def _retrieved(writer: asyncio.Task[None]) -> None:
    """A body writer's failure is read where it matters (the exchange); never reported as lost."""
    if not writer.cancelled():
        writer.exception()


async def _write_body(
    connection: UpstreamConnection, body: AsyncIterator[bytes], chunked: bool
) -> None:
    """A streamed request body, after its head: as it is, or chunked when its length is not
    known."""
    async for chunk in body:
        if not chunk:
            continue
        await connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
    if chunked:
        await connection.write(b"0\r\n\r\n")
    connection.written()
