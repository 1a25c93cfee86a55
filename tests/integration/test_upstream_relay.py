"""The upstream's answer relayed to the client (aitbc_api.proxy.relay) while the client's
request body may still be streaming upstream."""

from __future__ import annotations

import asyncio
from typing import Any

from aitbc_api.proxy.forward import _rest_of_body
from aitbc_api.proxy.relay import Relay
from tests.upstream_server import pool


async def _early_answerer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers as soon as a request's head is in (a streaming echo of the body's size would do
    the same), then reads the chunked body and reports what it got."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nstart;\r\n")
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")
    report = b"got=%b" % body
    writer.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(report), report))
    await writer.drain()
    writer.close()


async def test_a_body_still_streaming_when_the_answer_starts_reaches_the_upstream_whole() -> None:
    listening = await asyncio.start_server(_early_answerer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    upstream = pool(url)
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive() -> dict[str, Any]:
        return await messages.get()

    body = _rest_of_body(b"a", receive, 1000)
    response = await upstream.request("POST", b"/v1/echo", [], body)  # the head is in
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    relaying = asyncio.ensure_future(Relay(response)({}, receive, send))
    for piece in (b"b", b"c", b"d"):
        await asyncio.sleep(0.05)
        await messages.put({"type": "http.request", "body": piece, "more_body": True})
    await messages.put({"type": "http.request", "body": b"e", "more_body": False})
    await asyncio.wait_for(relaying, 5)
    relayed = b"".join(message.get("body", b"") for message in sent[1:])
    assert relayed == b"start;got=abcde"
    await upstream.close()
    listening.close()


async def test_a_body_refused_mid_stream_while_the_answer_streams_ends_the_relay() -> None:
    listening = await asyncio.start_server(_early_answerer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    upstream = pool(url)
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive() -> dict[str, Any]:
        return await messages.get()

    response = await upstream.request("POST", b"/v1/echo", [], _rest_of_body(b"a", receive, 3))
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    relaying = asyncio.ensure_future(Relay(response)({}, receive, send))
    await asyncio.sleep(0.05)
    await messages.put({"type": "http.request", "body": b"bcd", "more_body": True})  # 413
    await asyncio.wait_for(relaying, 5)  # ended, not waiting on an upstream that waits too
    assert not any(message.get("more_body") is False for message in sent)  # not shown whole
    await upstream.close()
    listening.close()
