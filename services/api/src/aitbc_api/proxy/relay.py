"""The upstream's answer, passed back to the client as it comes."""

from __future__ import annotations

import asyncio

import anyio
from litestar.types import Receive, Scope, Send

from aitbc_api.proxy.upstream_response import UpstreamResponse

# Hop-by-hop (RFC 9110 section 7.6.1, and any the answer's Connection header names), and what
# the edge's server writes itself.
_DROP_RESPONSE = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"upgrade",
     b"trailer", b"proxy-authenticate", b"x-request-id", b"date", b"server"}
)  # fmt: skip


def named_by_connection(value: bytes) -> set[bytes]:
    """The header names a Connection header's `value` lists (RFC 9110 section 7.6.1: each
    is for this hop only, never passed on), lowercase."""
    return {name.strip().lower() for name in value.split(b",")} - {b""}


class Relay:
    """The upstream's answer, passed on as it comes: an ASGI app, which Litestar runs as is.
    An answer that was whole when its head arrived (most are) goes out in one message, with
    nothing to wait for; any other streams on chunk by chunk until it ends or the client goes."""

    __slots__ = ("upstream",)

    def __init__(self, upstream: UpstreamResponse) -> None:
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        upstream = self.upstream
        try:
            headers, named = [], set()
            for name, value in upstream.headers:  # one pass: lowered (as ASGI asks), kept
                if (name := name.lower()) not in _DROP_RESPONSE:
                    headers.append((name, value))
                elif name == b"connection":
                    named |= named_by_connection(value)
            if named - _DROP_RESPONSE:
                headers = [(name, value) for name, value in headers if name not in named]
            await send(
                {"type": "http.response.start", "status": upstream.status, "headers": headers}
            )
            if upstream.whole:
                body = upstream.read_now()
                await send({"type": "http.response.body", "body": body, "more_body": False})
            else:
                await _stream(upstream, receive, send)
        finally:
            upstream.release()  # the connection goes back to the pool, or closes if unread


async def _stream(upstream: UpstreamResponse, receive: Receive, send: Send) -> None:
    """Each chunk as it arrives. A send to a client that went away does not fail, so the
    client's disconnect is watched for: it ends the stream (and the upstream's connection)."""
    async with anyio.create_task_group() as relaying:
        relaying.start_soon(_end_on_disconnect, receive, relaying.cancel_scope, upstream.writing)
        async for chunk in upstream.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        relaying.cancel_scope.cancel()  # the watcher's work is done


async def _end_on_disconnect(
    receive: Receive, relaying: anyio.CancelScope, writing: asyncio.Task[None] | None
) -> None:
    """The client's disconnect ends the relay. While the request's body is still being written
    upstream its writer reads `receive`: read here too, messages of the body would be lost to
    it, so this waits for the writer, and a body that failed (the client left, 413) ends it."""
    if writing is not None:
        await asyncio.wait((writing,))
        if writing.cancelled() or writing.exception() is not None:
            relaying.cancel()
            return
    while (await receive())["type"] != "http.disconnect":
        pass  # the rest of a body the upstream answered without reading
    relaying.cancel()
