"""The operators' listener: `/metrics` on a port of its own (`API_METRICS_PORT`, on
`API_METRICS_HOST`, 127.0.0.1 unless told otherwise), never on the public one, where anyone
could read the edge's counters.

A small HTTP/1.1 server on asyncio streams, started and stopped by the edge's lifespan: one
request per connection, a bounded head (8 KiB, 5 s), `GET` or `HEAD /metrics`; anything else is
answered with the error body. It shares nothing with the public listener's limits or routes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import msgspec

from aitbc_api import metrics
from aitbc_api.errors import ErrorBody, ErrorDetail
from aitbc_contracts.messages import Code

log = logging.getLogger("aitbc.api.metrics")

MAX_HEAD = 8 * 1024
HEAD_TIMEOUT = 5.0
PATH = b"/metrics"
TEXT = b"text/plain; version=0.0.4; charset=utf-8"  # the Prometheus text format
_REASONS = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed"}

Gauges = Callable[[], dict[str, float]]


def _response(status: int, content_type: bytes, body: bytes, with_body: bool = True) -> bytes:
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (
        status, _REASONS[status], content_type, len(body),
    )  # fmt: skip
    return head + b"connection: close\r\n\r\n" + (body if with_body else b"")


def _error(status: int, code: str, message: str) -> bytes:
    body = msgspec.json.encode(ErrorBody(ErrorDetail(code, message)))
    return _response(status, b"application/json", body)


def answer(head: bytes, gauges: Gauges) -> bytes:
    """The response to a request head (its request line is all that matters)."""
    method, _, rest = head.partition(b" ")
    path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
    if path != PATH:
        return _error(404, Code.NOT_FOUND, "Only /metrics is served here")
    if method not in (b"GET", b"HEAD"):
        return _error(405, Code.METHOD_NOT_ALLOWED, "Use GET")
    return _response(200, TEXT, metrics.render(gauges()).encode(), with_body=method == b"GET")


async def _serve(
    gauges: Gauges, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        async with asyncio.timeout(HEAD_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        writer.write(answer(head, gauges))
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass  # slow, cut off or oversized: the connection is closed without an answer
    finally:
        writer.close()


@asynccontextmanager
async def metrics_listener(host: str, port: int, gauges: Gauges) -> AsyncIterator[None]:
    """Serves /metrics on host:port while the context is open; port 0: no listener."""
    if not port:
        yield
        return

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve(gauges, reader, writer)

    server = await asyncio.start_server(serve, host, port, limit=MAX_HEAD)
    log.info("metrics at http://%s:%d/metrics", host, port)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
