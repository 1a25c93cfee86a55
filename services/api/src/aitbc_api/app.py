"""create_app(): the Litestar edge; its lifespan connects NATS and the upstream pool."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, MediaType, get
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from aitbc_api import key_events, metrics
from aitbc_api.auth import API_KEY_QUERY, AuthCache, Authenticator
from aitbc_api.clients import KeysClient, UsageClient
from aitbc_api.dashboard import dashboard_router, session_store, with_dashboard_pages
from aitbc_api.edge import Edge
from aitbc_api.errors import exception_handlers
from aitbc_api.limits import DecisionBatcher, RateLimiter
from aitbc_api.middleware import EdgeMiddleware, edge_of
from aitbc_api.routes.accounts import sign_up
from aitbc_api.routes.api_keys import ApiKeysController
from aitbc_api.routes.proxy import forward, upstream_session
from aitbc_api.routes.usage import usage
from aitbc_api.settings import Settings, get_settings
from aitbc_api.throttle import FailureThrottle
from aitbc_api.types import Req
from aitbc_api.usage_events import UsagePublisher
from aitbc_contracts.subjects import KEY_EVENTS_SUBJECTS
from aitbc_contracts.usage import LEASE_DUE_SECONDS
from aitbc_runtime.bus import Follower, connect

log = logging.getLogger("aitbc.api")


@get("/metrics", media_type=MediaType.TEXT, include_in_schema=False, sync_to_thread=False)
def metrics_endpoint(request: Req) -> str:
    buffered = len(edge_of(request).usage_publisher.buffer)
    return metrics.render({"aitbc_usage_events_buffered": buffered})


def _openapi() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="AITBC Coordinator API (edge)",
        version="1.0.0",
        description="API keys, per-plan rate limits and usage in front of the Coordinator.",
        components=Components(
            security_schemes={
                "ApiKeyHeader": SecurityScheme(
                    type="apiKey", name="X-API-Key", security_scheme_in="header"
                ),
                "ApiKeyQuery": SecurityScheme(
                    type="apiKey", name=API_KEY_QUERY, security_scheme_in="query"
                ),
            }
        ),
        security=[{"ApiKeyHeader": []}, {"ApiKeyQuery": []}],
    )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        cache = AuthCache(
            settings.auth_cache_size,
            settings.auth_cache_ttl,
            settings.negative_cache_size,
            settings.negative_cache_ttl,
        )
        nc = await connect(settings.nats_url, "aitbc-api")
        keys = KeysClient(nc, settings.keys_timeout)
        follower = Follower(
            nc,
            KEY_EVENTS_SUBJECTS,
            lambda msg: key_events.apply(cache, msg.data),
            "key-events",
            on_reset=cache.clear,  # events may have passed while we were away
        )
        follower.start()
        publisher = UsagePublisher(nc, settings.usage_buffer)
        publisher.start()
        limiter = RateLimiter(
            DecisionBatcher(nc, settings.usage_timeout),
            dict(settings.plan_limits),
            settings.fail_open,
            settings.rate_limit_lease,
        )
        limiter.start()
        if settings.usage_timeout <= LEASE_DUE_SECONDS:
            log.warning(
                "USAGE_TIMEOUT=%gs: a refusal that waits for other edges' leases (up to %gs) "
                "may time out and fall back to USAGE_FAIL_MODE; keep it above that",
                settings.usage_timeout,
                LEASE_DUE_SECONDS,
            )
        async with upstream_session(settings) as upstream:
            app.state.edge = Edge(
                settings=settings,
                authenticator=Authenticator(
                    cache, keys, FailureThrottle(settings.auth_failure_budget)
                ),
                limiter=limiter,
                usage_publisher=publisher,
                upstream=upstream,
                keys_client=keys,
                usage_client=UsageClient(nc, settings.keys_timeout),
                dashboard_sessions=await session_store(settings, nc),
            )
            try:
                yield
            finally:
                await limiter.stop()
                await publisher.stop()
                await follower.stop()
                await nc.drain()

    return Litestar(
        route_handlers=[
            sign_up,
            ApiKeysController,
            usage,
            forward,
            metrics_endpoint,
            dashboard_router(),
        ],
        lifespan=[lifespan],
        exception_handlers=with_dashboard_pages(exception_handlers),
        middleware=[
            DefineMiddleware(
                EdgeMiddleware,
                require_https=settings.require_https,
                body_timeout=settings.body_timeout,
            )
        ],
        openapi_config=_openapi(),
        request_max_body_size=settings.max_body_bytes,
        # main.py configures logging; Litestar's default would put a queue thread behind it.
        logging_config=None,
    )
