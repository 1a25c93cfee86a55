"""A minimal HTTP/1.1 keep-alive client on asyncio protocols, for the load that wrk cannot make:
requests on a fixed schedule (bench/paced.py), revocation pollers and the cache fill.

It sends prebuilt request bytes and reads a response (Content-Length or chunked) into its
status; a few microseconds of client time per request, so a 2-core machine keeps its CPU for
the servers under test.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


def build_request(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> bytes:
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            status = self._parse()
            if status is not None:
                self.waiter.set_result(status)

    def _parse(self) -> int | None:
        """The status of a complete response at the head of the buffer (consumed), or None."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buffer[:end]).lower()
        status = int(head[9:12])
        body = end + 4
        cl = head.find(b"\r\ncontent-length:")
        if cl >= 0:
            line_end = head.find(b"\r\n", cl + 2)
            length = int(head[cl + 17 : line_end if line_end >= 0 else len(head)])
            if len(buffer) < body + length:
                return None
            del buffer[: body + length]
            return status
        if b"\r\ntransfer-encoding: chunked" in head:
            pos = body
            while True:
                line_end = buffer.find(b"\r\n", pos)
                if line_end < 0:
                    return None
                size = int(bytes(buffer[pos:line_end]).split(b";")[0], 16)
                pos = line_end + 2 + size + 2
                if len(buffer) < pos:
                    return None
                if size == 0:
                    del buffer[:pos]
                    return status
        del buffer[:body]  # no body (204, 304, HEAD)
        return status


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._protocol: _Protocol | None = None

    @classmethod
    def to(cls, url: str) -> Connection:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80)

    async def _connect(self) -> _Protocol:
        if self._protocol is None or self._protocol.closed:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
            self._protocol = protocol
        return self._protocol

    async def open(self) -> None:
        """Connects now, so that the first `send` times the request alone."""
        await self._connect()

    async def send(self, request: bytes) -> int:
        """Sends one request and returns the response's status (0: the connection failed)."""
        protocol = await self._connect()
        protocol.waiter = asyncio.get_running_loop().create_future()
        assert protocol.transport is not None
        protocol.transport.write(request)
        try:
            return await protocol.waiter
        except ConnectionError:
            return 0
        finally:
            protocol.waiter = None

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


async def fan_out(url: str, requests: list[bytes], connections: int) -> dict[int, int]:
    """Sends every request once over `connections` connections; counts responses by status."""
    statuses: dict[int, int] = {}
    queue = iter(requests)

    async def worker() -> None:
        connection = Connection.to(url)
        try:
            for request in queue:
                status = await connection.send(request)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return statuses
