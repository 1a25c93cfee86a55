"""The edge's upstream client (aitbc_api.proxy.upstream) against a scripted HTTP/1.1 server on
loopback: framing both ways, keep-alive and its limits, interim and bodiless answers, answers
cut short, timeouts, and what may be sent again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from aitbc_api.proxy.upstream import UpstreamFailed, UpstreamPool, UpstreamTimedOut

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


async def test_an_answer_whole_in_one_read_is_whole_and_its_connection_is_kept() -> None:
    server, listening, url = await serve(ok(extra=b"x-up: 1\r\n"))
    upstream = pool(url)
    for _ in range(3):
        response = await upstream.request("GET", b"/v1/jobs?a=1", [(b"x-request-id", b"r1")])
        assert (response.status, response.whole, response.read_now()) == (200, True, b"hello")
        assert (b"x-up", b"1") in response.headers
        response.release()
    assert server.connections == 1
    assert server.exchanges[0].line == b"GET /v1/jobs?a=1 HTTP/1.1"
    assert server.exchanges[0].header(b"host") == url.removeprefix("http://").encode()
    assert server.exchanges[0].header(b"x-request-id") == b"r1"
    await upstream.close()
    listening.close()


async def test_a_body_goes_with_its_length_or_chunked_when_it_streams() -> None:
    server, listening, url = await serve(ok())
    upstream = pool(url)

    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"ab", b"", b"cde"):
            yield piece

    (await upstream.request("POST", b"/v1/a", [], b"whole body")).release()
    (await upstream.request("POST", b"/v1/b", [], pieces())).release()
    (await upstream.request("PUT", b"/v1/c", [], pieces(), length=5)).release()
    whole, chunked, declared = server.exchanges
    assert (whole.header(b"content-length"), whole.body) == (b"10", b"whole body")
    assert (chunked.header(b"transfer-encoding"), chunked.body) == (b"chunked", b"abcde")
    assert (declared.header(b"content-length"), declared.body) == (b"5", b"abcde")
    assert server.connections == 1
    await upstream.close()
    listening.close()


async def test_a_chunked_answer_streams_as_it_comes() -> None:
    go_on = asyncio.Event()

    async def answer(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst;\r\n")
        await go_on.wait()
        await exchange.send(b"4\r\nrest\r\n0\r\n\r\n")

    server, listening, url = await serve(answer)
    upstream = pool(url)
    response = await upstream.request("GET", b"/v1/drip", [])
    assert not response.whole
    chunks = response.chunks()
    assert await chunks.__anext__() == b"first;"
    go_on.set()
    assert [chunk async for chunk in chunks] == [b"rest"]
    response.release()
    (await upstream.request("GET", b"/v1/again", [])).release()
    assert server.connections == 1  # the chunked answer read to its end: the connection kept
    await upstream.close()
    listening.close()


async def test_head_interim_and_bodiless_answers_keep_the_connection() -> None:
    async def answer(exchange: Exchange) -> None:
        path = exchange.line.split()[1]
        if path == b"/v1/head":
            await exchange.send(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
        elif path == b"/v1/interim":
            await exchange.send(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok"
            )
        else:
            await exchange.send(b"HTTP/1.1 204 No Content\r\n\r\n")

    server, listening, url = await serve(answer)
    upstream = pool(url)
    for method, path, status, body in (
        ("HEAD", b"/v1/head", 200, b""),
        ("GET", b"/v1/interim", 201, b"ok"),
        ("DELETE", b"/v1/none", 204, b""),
        ("HEAD", b"/v1/head", 200, b""),
    ):
        response = await upstream.request(method, path, [])
        assert (response.status, response.whole) == (status, True), path
        assert response.read_now() == body
        assert [name for name, _ in response.headers if name.lower() == b"content-length"] in (
            [b"content-length"],
            [],
        )
        response.release()
    assert server.connections == 1
    await upstream.close()
    listening.close()


async def test_an_answer_ended_by_its_connection_is_whole_and_one_cut_short_fails() -> None:
    async def answer(exchange: Exchange) -> None:
        if exchange.line.split()[1] == b"/v1/until-close":
            await exchange.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        else:
            await exchange.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
        exchange.writer.close()

    _, listening, url = await serve(answer)
    upstream = pool(url)
    assert await body_of(await upstream.request("GET", b"/v1/until-close", [])) == b"all of it"
    cut = await upstream.request("GET", b"/v1/cut", [])
    with pytest.raises(UpstreamFailed):
        await body_of(cut)
    await upstream.close()
    listening.close()


async def test_a_silent_upstream_times_out_and_a_closed_port_fails() -> None:
    async def never(exchange: Exchange) -> None:
        await asyncio.sleep(30)

    _, listening, url = await serve(never)
    with pytest.raises(UpstreamTimedOut):
        await pool(url, timeout=0.3).request("GET", b"/v1/slow", [])
    listening.close()
    await listening.wait_closed()
    with pytest.raises(UpstreamFailed):
        await pool(url).request("GET", b"/v1/gone", [])


async def test_garbage_from_the_upstream_fails_the_request() -> None:
    async def garbage(exchange: Exchange) -> None:
        await exchange.send(b"SMTP ready\r\n\r\n")

    _, listening, url = await serve(garbage)
    with pytest.raises(UpstreamFailed):
        await pool(url).request("GET", b"/v1/x", [])
    listening.close()


async def test_a_kept_connection_the_upstream_closed_is_sent_again_only_when_idempotent() -> None:
    """The upstream drops a kept connection as the next request arrives on it (its idle
    timer fired at that moment): a GET goes again on a new connection, a POST fails."""
    answered: set[asyncio.StreamWriter] = set()

    async def answer(exchange: Exchange) -> None:
        if exchange.writer in answered:
            exchange.writer.close()  # the second request on a connection: dropped unanswered
            return
        answered.add(exchange.writer)
        await ok()(exchange)

    server, listening, url = await serve(answer)
    upstream = pool(url)
    (await upstream.request("GET", b"/v1/1", [])).release()
    response = await upstream.request("GET", b"/v1/2", [])
    assert response.read_now() == b"hello"
    response.release()
    assert server.connections == 2
    with pytest.raises(UpstreamFailed):
        await upstream.request("POST", b"/v1/3", [], b"once only")
    assert [e.line.split()[1] for e in server.exchanges].count(b"/v1/3") == 1
    await upstream.close()
    listening.close()


async def test_the_pool_limit_makes_requests_wait_and_a_wait_has_its_timeout() -> None:
    server, listening, url = await serve(ok())
    upstream = pool(url, limit=1, timeout=0.3)
    held = await upstream.request("GET", b"/v1/1", [])  # its answer whole, not yet released
    with pytest.raises(UpstreamTimedOut):  # no connection came free in time
        await upstream.request("GET", b"/v1/2", [])
    waiting = asyncio.ensure_future(upstream.request("GET", b"/v1/3", []))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    held.release()
    (await waiting).release()
    assert server.connections == 1
    await upstream.close()
    listening.close()


async def test_a_failing_request_body_fails_the_request_and_its_connection() -> None:
    server, listening, url = await serve(ok())
    upstream = pool(url)

    async def broken() -> AsyncIterator[bytes]:
        yield b"part"
        raise ValueError("the client's body was refused")

    with pytest.raises(ValueError):
        await upstream.request("POST", b"/v1/x", [], broken())
    (await upstream.request("GET", b"/v1/y", [])).release()
    assert server.connections == 2  # the half-written request's connection was not reused
    await upstream.close()
    listening.close()


async def test_a_large_answer_is_relayed_whole_through_the_pause() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB: well past what is buffered before reading pauses
    server, listening, url = await serve(ok(payload))
    upstream = pool(url)
    response = await upstream.request("GET", b"/v1/big", [])
    received = b""
    async for chunk in response.chunks():
        received += chunk
        await asyncio.sleep(0)  # a slow reader
    response.release()
    assert received == payload
    (await upstream.request("GET", b"/v1/after", [])).release()
    assert server.connections == 1
    await upstream.close()
    listening.close()


async def test_an_idle_connection_past_its_keepalive_is_not_used() -> None:
    server, listening, url = await serve(ok())
    upstream = pool(url, keepalive=0.1)
    (await upstream.request("GET", b"/v1/1", [])).release()
    await asyncio.sleep(0.2)
    (await upstream.request("GET", b"/v1/2", [])).release()
    assert server.connections == 2
    await upstream.close()
    listening.close()


async def test_bytes_after_an_answer_close_its_connection_and_spare_the_answer() -> None:
    async def answer(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")

    server, listening, url = await serve(answer)
    upstream = pool(url)
    response = await upstream.request("GET", b"/v1/x", [])
    assert (response.whole, response.read_now()) == (True, b"ok")
    response.release()
    (await upstream.request("GET", b"/v1/y", [])).release()
    assert server.connections == 2  # the connection that said too much was not kept
    await upstream.close()
    listening.close()


async def test_the_upstreams_time_starts_when_a_streamed_body_has_been_written() -> None:
    """A body that streams for longer than the read timeout is no upstream's fault: the
    client's own deadline bounds it (the request layer's 408); the upstream's time starts
    once the body is written."""
    server, listening, url = await serve(ok())
    upstream = pool(url, timeout=0.3)

    async def slow() -> AsyncIterator[bytes]:
        for _ in range(5):
            await asyncio.sleep(0.15)
            yield b"x"

    response = await upstream.request("POST", b"/v1/x", [], slow())
    assert response.read_now() == b"hello"
    response.release()
    assert server.exchanges[0].body == b"xxxxx"
    await upstream.close()
    listening.close()
