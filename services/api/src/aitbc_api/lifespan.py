"""The edge's lifespan: connect NATS, start the running parts (the operators' /metrics listener
among them), and put them in the app's state; at the end stop them in the reverse order (the
limiter settles its leases and the publisher flushes its events while NATS is still there),
then drain the connection.

The app's state holds `edge` (the core, for the request path: aitbc_api.pipeline.edge),
`owner_services` (for the owners' routes and the dashboard: aitbc_api.owners.dependencies) and
`nats` (the one connection, for parts that wire themselves, such as the dashboard's sessions).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from litestar import Litestar
from nats.aio.client import Client as NATS

from aitbc_api import metrics
from aitbc_api.owners.dependencies import OWNER_SERVICES
from aitbc_api.owners.key_manager import OwnerServices
from aitbc_api.owners.usage_queries import UsageQueries
from aitbc_api.pipeline.auth import AuthCache, Authenticator
from aitbc_api.pipeline.cache_invalidation import CacheInvalidation
from aitbc_api.pipeline.decisions import DecisionBatcher
from aitbc_api.pipeline.edge import Edge, Load
from aitbc_api.pipeline.key_checks import KeyChecks
from aitbc_api.pipeline.limits import RateLimiter
from aitbc_api.pipeline.presence import Presence
from aitbc_api.pipeline.rate_limit_headers import RateLimitHeaders
from aitbc_api.pipeline.throttle import AttemptBudget, FailureThrottle
from aitbc_api.pipeline.usage_events import UsagePublisher
from aitbc_api.proxy.forward import upstream_identity, upstream_session
from aitbc_api.settings import Settings
from aitbc_contracts.messages import Code
from aitbc_contracts.subjects import KEYS_OWNER_COMMANDS
from aitbc_contracts.usage import LEASE_DUE_SECONDS
from aitbc_runtime.bus import connect
from aitbc_runtime.commands import KeysCommands
from aitbc_runtime.key_events import KeyEventReader
from aitbc_runtime.metrics import metrics_listener

log = logging.getLogger("aitbc.api")

NATS_CONNECTION = "nats"  # the app state's key


class _Part(Protocol):
    def start(self) -> None: ...

    async def stop(self) -> None: ...


P = TypeVar("P", bound=_Part)


@asynccontextmanager
async def _running(part: P) -> AsyncIterator[P]:
    part.start()
    try:
        yield part
    finally:
        await part.stop()


def _auth_cache(settings: Settings) -> AuthCache:
    return AuthCache(
        settings.auth_cache_size,
        settings.auth_cache_ttl,
        settings.negative_cache_size,
        settings.negative_cache_ttl,
        settings.auth_stale_max,
    )


def _rate_limiter(nc: NATS, settings: Settings, presence: Presence) -> RateLimiter:
    if settings.usage_timeout <= LEASE_DUE_SECONDS:
        log.warning(
            "USAGE_TIMEOUT=%gs: a refusal that waits for other edges' leases (up to %gs) "
            "may time out and fall back to USAGE_FAIL_MODE; keep it above that",
            settings.usage_timeout,
            LEASE_DUE_SECONDS,
        )
    return RateLimiter(
        DecisionBatcher(nc, settings.usage_timeout),
        dict(settings.plan_limits),
        settings.fail_open,
        settings.rate_limit_lease,
        edges=lambda: presence.edges,
    )


async def _start(app: Litestar, settings: Settings, nc: NATS, parts: AsyncExitStack) -> None:
    """Starts each part, in the order they must stop in reverse, and publishes them."""
    cache = _auth_cache(settings)
    reader = KeyEventReader(
        nc, [CacheInvalidation(cache)], "edge-auth-cache", on_lost=cache.lost, on_found=cache.found
    )
    await parts.enter_async_context(_running(reader))
    publisher = await parts.enter_async_context(
        _running(
            UsagePublisher(
                nc,
                settings.usage_buffer,
                route_words=settings.usage_route_words,
                spool=Path(settings.usage_spool_dir) if settings.usage_spool_dir else None,
            )
        )
    )
    presence = await parts.enter_async_context(_running(Presence(nc)))
    limiter = await parts.enter_async_context(_running(_rate_limiter(nc, settings, presence)))
    app.state[NATS_CONNECTION] = nc
    app.state.edge = Edge(
        settings=settings,
        authenticator=Authenticator(
            cache,
            KeyChecks(nc, settings.keys_timeout),
            FailureThrottle(settings.auth_failure_budget),
        ),
        limiter=limiter,
        rate_limit_headers=RateLimitHeaders(),
        usage_publisher=publisher,
        upstream=await parts.enter_async_context(upstream_session(settings)),
        load=Load(),
        identity=upstream_identity(settings),
    )
    metrics.USAGE_EVENTS_BUFFERED.set_function(lambda: len(publisher.buffer))
    await parts.enter_async_context(metrics_listener(settings.metrics_host, settings.metrics_port))
    app.state[OWNER_SERVICES] = OwnerServices(
        commands=KeysCommands(nc, settings.keys_timeout, KEYS_OWNER_COMMANDS),
        usage=UsageQueries(nc, settings.usage_query_timeout),
        forget_key=cache.evict_key,
        plan_limits=limiter.plan_limits,
        signups=AttemptBudget(
            "sign-up",
            Code.TOO_MANY_SIGNUPS,
            settings.signup_per_address_per_hour,
            3600,
            settings.signup_global_per_minute,
        ),
        forget_account=cache.evict_account,
        standard_key_usage=settings.standard_key_usage,
    )


def edge_lifespan(settings: Settings) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        nc = await connect(settings.nats, "aitbc-api")
        try:
            async with AsyncExitStack() as parts:
                await _start(app, settings, nc, parts)
                yield
        finally:
            await nc.drain()

    return lifespan


def nats_of(app: Litestar) -> NATS:
    connection: NATS = app.state[NATS_CONNECTION]
    return connection
