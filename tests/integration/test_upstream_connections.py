"""The edge's upstream client (aitbc_api.proxy.upstream) and its connections to a scripted
HTTP/1.1 server: request bodies both ways, timeouts, what may be sent again, the pool's limit
and keep-alive, and when the upstream's time starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from aitbc_api.proxy.upstream import UpstreamFailed, UpstreamTimedOut
from tests.upstream_server import Exchange, ok, pool, serve


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


async def test_an_idle_connection_past_its_keepalive_is_not_used() -> None:
    server, listening, url = await serve(ok())
    upstream = pool(url, keepalive=0.1)
    (await upstream.request("GET", b"/v1/1", [])).release()
    await asyncio.sleep(0.2)
    (await upstream.request("GET", b"/v1/2", [])).release()
    assert server.connections == 2
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


async def test_a_waiter_cancelled_as_it_is_woken_passes_the_free_connection_on() -> None:
    """The connection a waiting request was woken for goes to the next waiter if that request
    is cancelled (its client left, its deadline passed) before it could take it."""
    server, listening, url = await serve(ok())
    upstream = pool(url, limit=1, timeout=1)
    held = await upstream.request("GET", b"/v1/1", [])
    first = asyncio.ensure_future(upstream.request("GET", b"/v1/2", []))
    second = asyncio.ensure_future(upstream.request("GET", b"/v1/3", []))
    await asyncio.sleep(0.05)
    held.release()  # wakes the first waiter...
    first.cancel()  # ...which is cancelled before it runs
    (await asyncio.wait_for(second, 0.5)).release()  # not after the wait's whole timeout
    assert server.connections == 1
    await upstream.close()
    listening.close()
