"""A scripted HTTP/1.1 server on loopback, for the tests of the edge's upstream client
(aitbc_api.proxy.upstream): it reads each request (Content-Length or chunked bodies) and
answers as a test tells it to."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aitbc_api.proxy.upstream import UpstreamPool

Answer = Callable[["Exchange"], Awaitable[None]]


class Exchange:
    """One request as the server read it, and the connection to answer on."""

    def __init__(self, head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        self.head, self.body, self.writer = head, body, writer

    @property
    def line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name:
                return value.strip()
        return None

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


class Server:
    """Reads requests (Content-Length or chunked bodies) and answers each with `answer`."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.exchanges: list[Exchange] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                exchange = Exchange(head, b"", writer)
                exchange.body = await _body(reader, exchange)
                self.exchanges.append(exchange)
                await self.answer(exchange)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:  # the test's loop ends: Python 3.11 logs a raise here
            return
        finally:
            writer.close()


async def _body(reader: asyncio.StreamReader, exchange: Exchange) -> bytes:
    length = exchange.header(b"content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    if exchange.header(b"transfer-encoding") != b"chunked":
        return b""
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")
    return body


def ok(body: bytes = b"hello", extra: bytes = b"") -> Answer:
    async def answer(exchange: Exchange) -> None:
        await exchange.send(
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%b\r\n%b" % (len(body), extra, body)
        )

    return answer


async def serve(answer: Answer) -> tuple[Server, asyncio.Server, str]:
    server = Server(answer)
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    return server, listening, f"http://127.0.0.1:{port}"


def pool(url: str, **options: float) -> UpstreamPool:
    return UpstreamPool(url, connect_timeout=2, timeout=options.pop("timeout", 5), **options)  # type: ignore[arg-type]


async def body_of(response: object) -> bytes:
    chunks = [chunk async for chunk in response.chunks()]  # type: ignore[attr-defined]
    response.release()  # type: ignore[attr-defined]
    return b"".join(chunks)
