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


class Client:
    """The client's side of one relayed request: what it will send (`messages`), as the
    edge's `receive` reads it, and what the relay sent it."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.messages.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def relayed(self, response: Any) -> asyncio.Future[None]:
        return asyncio.ensure_future(Relay(response)({}, self.receive, self.send))


async def _early_upstream() -> tuple[asyncio.Server, Any]:
    listening = await asyncio.start_server(_early_answerer, "127.0.0.1", 0)
    return listening, pool(f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}")


async def test_a_body_still_streaming_when_the_answer_starts_reaches_the_upstream_whole() -> None:
    listening, upstream = await _early_upstream()
    client = Client()
    body = _rest_of_body(b"a", client.receive, 1000)
    response = await upstream.request("POST", b"/v1/echo", [], body)  # the head is in
    relaying = client.relayed(response)
    for piece in (b"b", b"c", b"d"):
        await asyncio.sleep(0.05)
        await client.messages.put({"type": "http.request", "body": piece, "more_body": True})
    await client.messages.put({"type": "http.request", "body": b"e", "more_body": False})
    await asyncio.wait_for(relaying, 5)
    relayed = b"".join(message.get("body", b"") for message in client.sent[1:])
    assert relayed == b"start;got=abcde"
    await upstream.close()
    listening.close()


async def test_a_body_refused_mid_stream_while_the_answer_streams_ends_the_relay() -> None:
    listening, upstream = await _early_upstream()
    client = Client()
    body = _rest_of_body(b"a", client.receive, 3)
    response = await upstream.request("POST", b"/v1/echo", [], body)
    relaying = client.relayed(response)
    await asyncio.sleep(0.05)
    await client.messages.put({"type": "http.request", "body": b"bcd", "more_body": True})  # 413
    await asyncio.wait_for(relaying, 5)  # ended, not waiting on an upstream that waits too
    assert not any(message.get("more_body") is False for message in client.sent)  # not whole
    await upstream.close()
    listening.close()
