"""The gate's core: the running parts every request's path reaches, made once per process by
`running_gate` (on the process's NATS connection) and stopped in the reverse order.

The request layer puts the gate in each request's context (aitbc_gate.requests), so admission
(aitbc_gate.admission) reaches each part with an attribute read and no lookup per request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from nats.aio.client import Client as NATS

from aitbc_contracts.plans import PlanTable, as_table
from aitbc_contracts.usage import LEASE_DUE_SECONDS
from aitbc_gate import metrics
from aitbc_gate.auth import AuthCache, Authenticator
from aitbc_gate.cache_invalidation import CacheInvalidation
from aitbc_gate.decisions import DecisionBatcher
from aitbc_gate.key_checks import KeyChecks
from aitbc_gate.limits import RateLimiter
from aitbc_gate.presence import Presence
from aitbc_gate.rate_limit_headers import RateLimitHeaders
from aitbc_gate.settings import GateSettings
from aitbc_gate.throttle import FailureThrottle
from aitbc_gate.usage_events import UsagePublisher
from aitbc_runtime.key_events import KeyEventReader
from aitbc_runtime.plan_reload import watching
from aitbc_runtime.summed import sampled

log = logging.getLogger("aitbc.gate")


class Load:
    """How busy this process is: the HTTP requests it is serving now (the request layer
    counts)."""

    __slots__ = ("in_flight",)

    def __init__(self) -> None:
        self.in_flight = 0


@dataclass(frozen=True, slots=True)
class Gate:
    settings: GateSettings
    authenticator: Authenticator
    limiter: RateLimiter
    rate_limit_headers: RateLimitHeaders
    usage_publisher: UsagePublisher
    load: Load
    # How many edges are alive, this one included (aitbc_gate.presence): what this edge's
    # share of a budget or limit every edge admits from on its own is of.
    edges: Callable[[], int]

    @property
    def cache(self) -> AuthCache:
        return self.authenticator.cache


class GateSlot:
    """Where a gate is, once it runs: the request layer reads it per request, whoever starts
    it (the edge's lifespan, or the middleware's own)."""

    __slots__ = ("gate",)

    def __init__(self) -> None:
        self.gate: Gate | None = None


class _Part(Protocol):
    def start(self) -> None: ...

    async def stop(self) -> None: ...


P = TypeVar("P", bound=_Part)


@asynccontextmanager
async def running(part: P) -> AsyncIterator[P]:
    part.start()
    try:
        yield part
    finally:
        await part.stop()


@asynccontextmanager
async def running_gate(settings: GateSettings, nc: NATS) -> AsyncIterator[Gate]:
    """The gate's parts on `nc`, started in the order they stop in reverse: at the end the
    limiter settles its leases and the publisher flushes its events while NATS is still there."""
    async with AsyncExitStack() as parts:
        cache = _auth_cache(settings)
        views = [CacheInvalidation(cache)]
        reader = KeyEventReader(
            nc, views, "edge-auth-cache", on_lost=cache.lost, on_found=cache.found
        )
        await parts.enter_async_context(running(reader))
        spool = Path(settings.usage_spool_dir) if settings.usage_spool_dir else None
        publisher = UsagePublisher(
            nc, settings.usage_buffer, route_words=settings.route_words, spool=spool
        )
        await parts.enter_async_context(running(publisher))
        presence = await parts.enter_async_context(running(Presence(nc)))
        edges = presence.alive  # the one count: every share of this edge reads it
        plans = plan_table(settings)  # a plans file that does not validate stops the start here
        await parts.enter_async_context(watching(plans))
        limiter = await parts.enter_async_context(
            running(_rate_limiter(nc, settings, edges, plans))
        )
        sampled(metrics.USAGE_EVENTS_BUFFERED, lambda: len(publisher.buffer))
        sampled(metrics.EDGES_ALIVE, edges)
        yield Gate(
            settings=settings,
            authenticator=Authenticator(
                cache,
                KeyChecks(nc, settings.keys_timeout),
                FailureThrottle(settings.auth_failure_budget),
            ),
            limiter=limiter,
            rate_limit_headers=RateLimitHeaders(),
            usage_publisher=publisher,
            load=Load(),
            edges=edges,
        )


def _auth_cache(settings: GateSettings) -> AuthCache:
    return AuthCache(
        settings.auth_cache_size,
        settings.auth_cache_ttl,
        settings.negative_cache_size,
        settings.negative_cache_ttl,
        settings.auth_stale_max,
    )


def plan_table(settings: GateSettings) -> PlanTable:
    """The plans file's plans, else the per-minute limits (PLAN_LIMITS)."""
    if settings.plans_file:
        return PlanTable(settings.plans_file)
    return as_table(dict(settings.plan_limits))


def _rate_limiter(
    nc: NATS, settings: GateSettings, edges: Callable[[], int], plans: PlanTable
) -> RateLimiter:
    if settings.usage_timeout <= LEASE_DUE_SECONDS:
        log.warning(
            "USAGE_TIMEOUT=%gs: a refusal that waits for other edges' leases (up to %gs) "
            "may time out and fall back to USAGE_FAIL_MODE; keep it above that",
            settings.usage_timeout,
            LEASE_DUE_SECONDS,
        )
    return RateLimiter(
        DecisionBatcher(nc, settings.usage_timeout),
        plans,
        settings.fail_open,
        settings.rate_limit_lease,
        edges=edges,
    )
