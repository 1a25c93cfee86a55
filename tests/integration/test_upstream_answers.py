"""The edge's upstream client (aitbc_api.proxy.upstream) reading answers from a scripted
HTTP/1.1 server: whole or streamed, interim and bodiless ones, ones ended by their connection
or cut short, garbage, large ones, and bytes after an answer."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from aitbc_api.proxy.upstream import UpstreamFailed, UpstreamTimedOut
from tests.upstream_server import Exchange, body_of, ok, pool, serve


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


async def test_an_answer_ended_by_a_reset_is_cut_short_not_whole() -> None:
    """An answer delimited by its connection's end is whole only if the connection was closed;
    a reset may have cut it anywhere."""

    async def reset(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nthe first half")
        await asyncio.sleep(0.2)  # read by the edge before the reset
        sock = exchange.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        exchange.writer.transport.abort()  # lingering 0 s: a reset, not a close

    _, listening, url = await serve(reset)
    upstream = pool(url)
    answer = await upstream.request("GET", b"/v1/reset", [])
    with pytest.raises(UpstreamFailed):
        await body_of(answer)
    await upstream.close()
    listening.close()


async def test_an_answer_with_a_transfer_coding_besides_chunked_fails() -> None:
    """Transfer codings are hop-by-hop: the edge could relay neither a gzip coding (its client is
    told none) nor the coded bytes as they are."""

    async def coded(exchange: Exchange) -> None:
        coding = b"gzip" if exchange.line.split()[1] == b"/v1/gzip" else b"gzip, chunked"
        await exchange.send(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: %b\r\n\r\n5\r\ncoded\r\n0\r\n\r\n" % coding
        )
        exchange.writer.close()

    _, listening, url = await serve(coded)
    upstream = pool(url)
    for path in (b"/v1/gzip", b"/v1/gzip-chunked"):
        with pytest.raises(UpstreamFailed):
            await body_of(await upstream.request("GET", path, []))
    await upstream.close()
    listening.close()


async def test_garbage_from_the_upstream_fails_the_request() -> None:
    async def garbage(exchange: Exchange) -> None:
        await exchange.send(b"SMTP ready\r\n\r\n")

    _, listening, url = await serve(garbage)
    with pytest.raises(UpstreamFailed):
        await pool(url).request("GET", b"/v1/x", [])
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


async def test_a_switch_of_protocols_fails_the_request_as_any_other_bad_answer() -> None:
    """The edge asks for no upgrade: a 101 is an answer it cannot read (the parser's signal for
    it is no parser error, and must not escape the protocol as an unhandled one)."""

    async def switch(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 101 Switching\r\nconnection: upgrade\r\nupgrade: x\r\n\r\n")

    unhandled: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context))
    _, listening, url = await serve(switch)
    with pytest.raises(UpstreamFailed):
        await pool(url).request("GET", b"/v1/x", [])
    assert unhandled == []
    listening.close()


async def test_an_endless_head_fails_the_request_before_it_fills_the_edges_memory() -> None:
    async def endless(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 200 OK\r\n")
        while True:  # until the edge hangs up, never long without a byte for its read timeout
            await exchange.send(b"x-filler: %b\r\n" % (b"f" * 1024))

    _, listening, url = await serve(endless)
    with pytest.raises(UpstreamFailed):  # at once: neither the read timeout nor the test's
        await asyncio.wait_for(pool(url, timeout=30).request("GET", b"/v1/x", []), 10)
    listening.close()


async def test_a_head_trickled_within_each_read_timeout_times_out_whole() -> None:
    """The timeout is the whole head's: a byte now and then, each inside it, gains nothing.
    The body that follows a head is timed read by read (it may stream for as long as it
    goes on)."""

    async def trickled(exchange: Exchange) -> None:
        for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n":
            await exchange.send(bytes([byte]))
            await asyncio.sleep(0.1)

    _, listening, url = await serve(trickled)
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamTimedOut):
        await pool(url, timeout=0.5).request("GET", b"/v1/x", [])
    assert asyncio.get_running_loop().time() - started < 2.0  # the head needs 3.8 s
    listening.close()


async def test_a_body_streamed_for_longer_than_the_timeout_is_relayed_whole() -> None:
    async def streamed(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(6):
            await asyncio.sleep(0.2)
            await exchange.send(b"1\r\nx\r\n")
        await exchange.send(b"0\r\n\r\n")

    _, listening, url = await serve(streamed)
    response = await pool(url, timeout=0.5).request("GET", b"/v1/x", [])
    assert await body_of(response) == b"x" * 6  # 1.2 s in all, no read over 0.5 s
    listening.close()


async def test_endless_interim_answers_fail_the_request() -> None:
    async def endless(exchange: Exchange) -> None:
        while True:
            await exchange.send(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")

    _, listening, url = await serve(endless)
    with pytest.raises(UpstreamFailed):
        await asyncio.wait_for(pool(url, timeout=30).request("GET", b"/v1/x", []), 10)
    listening.close()


async def test_a_trailer_is_not_taken_for_a_header() -> None:
    async def trailed(exchange: Exchange) -> None:
        await exchange.send(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\nset-cookie: session=planted\r\n\r\n"
        )

    _, listening, url = await serve(trailed)
    upstream = pool(url)
    response = await upstream.request("GET", b"/v1/x", [])
    assert (response.whole, response.read_now()) == (True, b"ok")
    assert [name for name, _ in response.headers] == [b"transfer-encoding"]
    response.release()
    await upstream.close()
    listening.close()
