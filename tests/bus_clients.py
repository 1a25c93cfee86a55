"""A test's connection to a secured nats-server as one of the bus roles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
from nats.aio.client import Client as NATS

from aitbc_infra.nats_server import NatsServer


@asynccontextmanager
async def connected(
    server: NatsServer, role: str, errors: list[str] | None = None
) -> AsyncIterator[NATS]:
    """Connected as `role`; the server's asynchronous errors (a refused publish or
    subscription) are added to `errors`."""

    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc))

    nc = await nats.connect(**server.options(role), error_cb=on_error)
    try:
        yield nc
    finally:
        await nc.close()
