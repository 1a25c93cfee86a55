"""When a started service serves: the one readiness probe of `just up`, the tests and the
benchmarks.

A probe is asked again and again until it says yes. Which probe a service has is part of its
definition (aitbc_infra.stack): nats-server is ready when a client of the admin role connects
(TLS and credentials included), the keys and usage services when they answer a request on
the bus, the Coordinator and the edge when `/v1/health` answers 200. (The services also wait
for their own answer before they say they are ready, with `aitbc_runtime.bus.until_answered`;
these probes look from outside.)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NATS

from aitbc_runtime.bus import until_answered
from aitbc_runtime.bus_access import BusAccess

Probe = Callable[[], Awaitable[bool]]
T = TypeVar("T")

ATTEMPT_TIMEOUT = 2.0  # one question may take this long before it counts as a no
INTERVAL = 0.05  # between questions


def port_open(host: str, port: int) -> Probe:
    """Ready once `host:port` accepts a TCP connection."""

    async def ready() -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return ready


def http_ok(url: str) -> Probe:
    """Ready once a GET of `url` (plain HTTP) answers 200."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    ).encode()

    async def ready() -> bool:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(request)
            status_line = await reader.readline()  # "HTTP/1.1 200 OK"
        except OSError:
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return status_line.split(b" ", 2)[1:2] == [b"200"]

    return ready


async def _client(access: BusAccess) -> NATS | None:
    """A connection of `access` that tries once, quietly; None when it cannot connect."""
    try:
        return await nats.connect(
            **access.options(),
            connect_timeout=1,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            # a refused server is tried again at once, not after nats-py's 2 s backoff: the
            # probe is asked again anyway, and a server that is starting listens within ms
            reconnect_time_wait=0,
            error_cb=quiet_errors,
        )
    except Exception:
        return None


def connects(access: BusAccess) -> Probe:
    """Ready once a client of `access` is let in: nats-server listens, and with TLS has
    finished its handshake (a bare TCP probe of a TLS port makes the server log an error)."""

    async def ready() -> bool:
        nc = await _client(access)
        if nc is None:
            return False
        await nc.close()
        return True

    return ready


def answers(access: BusAccess, subject: str, payload: bytes) -> Probe:
    """Ready once something answers a request on `subject` (any answer: it is listening)."""

    async def ready() -> bool:
        nc = await _client(access)
        if nc is None:
            return False
        try:
            await until_answered(nc, subject, payload, within=1.0)
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    return ready


async def quiet_errors(_: Exception) -> None:
    """nats-py logs each failed attempt with a traceback; the caller reports a timeout instead."""


async def until_ready(
    probe: Probe, within: float, given_up: Callable[[], bool] = lambda: False
) -> bool:
    """True once `probe` says ready; False after `within` seconds, or as soon as `given_up()`
    (the process died, a stop came): the caller says which, it knows."""
    deadline = time.monotonic() + within
    while not given_up():
        with contextlib.suppress(Exception):
            if await asyncio.wait_for(probe(), ATTEMPT_TIMEOUT):
                return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(INTERVAL)
    return False


def run_to_end(work: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(work)`, also from code that an event loop is running (the benchmarks start
    processes from theirs): there on a thread of its own, since a loop cannot be nested."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(asyncio.run(work))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="readiness")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
