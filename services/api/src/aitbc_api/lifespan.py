"""The edge's lifespan: connect NATS, start the gate (aitbc_gate.core) and the edge's own parts
(the upstream connections, the operators' /metrics listener), and put them in the app's state; at
the end stop them in the reverse order (the gate settles its leases and flushes its usage
events while NATS is still there), then drain the connection.

The gate goes in the request layer's slot (aitbc_gate.requests) and in the app's state as
`gate`; the state also holds `forwarding` (aitbc_api.proxy.forward), `owner_services` (for the
owners' routes and the dashboard: aitbc_api.owners.dependencies) and `nats` (the one
connection, for parts that wire themselves, such as the dashboard's sessions).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from litestar import Litestar
from nats.aio.client import Client as NATS

from aitbc_api.owners.dependencies import OWNER_SERVICES
from aitbc_api.owners.key_manager import OwnerServices
from aitbc_api.owners.usage_queries import UsageQueries
from aitbc_api.proxy.forward import FORWARDING, Forwarding, upstream_identity, upstream_pool
from aitbc_api.settings import Settings
from aitbc_contracts.messages import Code
from aitbc_contracts.subjects import KEYS_OWNER_COMMANDS
from aitbc_gate.core import GateSlot, running_gate
from aitbc_gate.throttle import AttemptBudget
from aitbc_runtime.bus import connect
from aitbc_runtime.commands import KeysCommands
from aitbc_runtime.metrics import metrics_listener

log = logging.getLogger("aitbc.api")

NATS_CONNECTION = "nats"  # the app state's key


async def _start(
    app: Litestar, settings: Settings, slot: GateSlot, nc: NATS, parts: AsyncExitStack
) -> None:
    """Starts each part, in the order they must stop in reverse, and publishes them."""
    gate = await parts.enter_async_context(running_gate(settings, nc))
    upstream = upstream_pool(settings)
    parts.push_async_callback(upstream.close)
    app.state[NATS_CONNECTION] = nc
    app.state.gate = slot.gate = gate
    app.state[FORWARDING] = Forwarding(settings, upstream, upstream_identity(settings))
    await parts.enter_async_context(metrics_listener(settings.metrics_host, settings.metrics_port))
    app.state[OWNER_SERVICES] = OwnerServices(
        commands=KeysCommands(nc, settings.keys_timeout, KEYS_OWNER_COMMANDS),
        usage=UsageQueries(nc, settings.usage_query_timeout),
        forget_key=gate.cache.evict_key,
        plan_limits=gate.limiter.plan_limits,
        plan_table=gate.limiter.table,
        signups=AttemptBudget(
            "sign-up",
            Code.TOO_MANY_SIGNUPS,
            settings.signup_per_address_per_hour,
            3600,
            settings.signup_global_per_minute,
            edges=gate.edges,  # the whole system's budget: this edge admits its share
        ),
        forget_account=gate.cache.evict_account,
        standard_key_usage=settings.standard_key_usage,
    )


def edge_lifespan(
    settings: Settings, slot: GateSlot
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        nc = await connect(settings.nats, "aitbc-api", wait=settings.nats_wait)
        try:
            async with AsyncExitStack() as parts:
                await _start(app, settings, slot, nc, parts)
                yield
                slot.gate = None  # requests from now on answer 503, as the gate stops
        finally:
            await nc.drain()

    return lifespan


def nats_of(app: Litestar) -> NATS:
    connection: NATS = app.state[NATS_CONNECTION]
    return connection
