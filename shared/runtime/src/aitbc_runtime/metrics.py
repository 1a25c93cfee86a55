"""The operators' listener of every service: `/metrics` in the Prometheus text format, from
`prometheus_client`'s registry, on a port of its own (the edge's `API_METRICS_PORT`, the keys
service's `KEYS_METRICS_PORT`, the usage service's `USAGE_METRICS_PORT`; on 127.0.0.1 unless
told otherwise), never on a public one.

The metrics are `prometheus_client`'s; the listener is not its `start_http_server`, which
runs a threaded server that answers any path and method and waits on a slow client for ever.
This one is a small HTTP/1.1 server on the service's own event loop, started and stopped with
the service: one request per connection, a bounded head (8 KiB, 5 s), `GET` or `HEAD
/metrics`; anything else is answered with the error body.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import msgspec
from prometheus_client import REGISTRY, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from aitbc_contracts.messages import Code, ErrorBody, ErrorDetail
from aitbc_runtime.summed import multiprocess_mode, summed_registry, sync, syncing

log = logging.getLogger("aitbc.metrics")

MAX_HEAD = 8 * 1024
HEAD_TIMEOUT = 5.0
PATH = b"/metrics"
TEXT = CONTENT_TYPE_PLAIN_0_0_4.encode()  # what generate_latest writes (and every scraper reads)
_REASONS = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed"}

# Latency buckets, in seconds, of every duration histogram: from a cached decision (~0.1 ms)
# to a request that waited out a timeout (seconds).
SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOCAL = "127.0.0.1"  # where a listener is unless told otherwise: this machine's operators only


def listener_address(env: Mapping[str, str], prefix: str) -> tuple[str, int]:
    """Where a service's listener is: `<prefix>_METRICS_HOST` [127.0.0.1] and
    `<prefix>_METRICS_PORT` [0: no listener], e.g. KEYS_METRICS_PORT."""
    name = f"{prefix}_METRICS_PORT"
    value = (env.get(name) or "0").strip()
    if not value.isdecimal() or int(value) > 65535:
        raise ValueError(f"{name} must be a port number (0: no metrics listener): {value!r}")
    return env.get(f"{prefix}_METRICS_HOST") or LOCAL, int(value)


def _response(status: int, content_type: bytes, body: bytes, with_body: bool = True) -> bytes:
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (
        status, _REASONS[status], content_type, len(body),
    )  # fmt: skip
    return head + b"connection: close\r\n\r\n" + (body if with_body else b"")


def _error(status: int, code: str, message: str) -> bytes:
    body = msgspec.json.encode(ErrorBody(ErrorDetail(code, message)))
    return _response(status, b"application/json", body)


def answer(head: bytes) -> bytes:
    """The response to a request head (its request line is all that matters)."""
    method, _, rest = head.partition(b" ")
    path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
    if path != PATH:
        return _error(404, Code.NOT_FOUND, "Only /metrics is served here")
    if method not in (b"GET", b"HEAD"):
        return _error(405, Code.METHOD_NOT_ALLOWED, "Use GET")
    sync()  # a server's workers: this one's latest counts, the others' at most a second old
    registry = summed_registry() if multiprocess_mode() else REGISTRY
    return _response(200, TEXT, generate_latest(registry), with_body=method == b"GET")


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(HEAD_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        writer.write(answer(head))
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass  # slow, cut off or oversized: the connection is closed without an answer
    finally:
        writer.close()


@asynccontextmanager
async def metrics_listener(host: str, port: int) -> AsyncIterator[None]:
    """Serves /metrics on host:port while the context is open; port 0: no listener."""
    if not port:
        yield
        return
    server = await _listen(host, port)
    try:
        async with syncing():  # every worker's, whichever serves the port
            yield
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
        if multiprocess_mode():  # its live gauges leave the sums
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


async def _listen(host: str, port: int) -> asyncio.Server | None:
    """The listener; None when another worker of this server holds the port (it serves the
    metrics of all, this one's included)."""
    try:
        server = await asyncio.start_server(_serve, host, port, limit=MAX_HEAD)
    except OSError as exc:
        if not (multiprocess_mode() and exc.errno == errno.EADDRINUSE):
            raise
        log.info("metrics at http://%s:%d/metrics, served by another worker", host, port)
        return None
    log.info("metrics at http://%s:%d/metrics", host, port)
    return server
