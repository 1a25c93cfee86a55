"""create_app(): the Litestar edge; its lifespan connects NATS and the upstream pool, and drains them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import nats
from litestar import Litestar
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from aitbc_api.auth import API_KEY_QUERY, AuthCache, Authenticator
from aitbc_api.clients import KeysClient
from aitbc_api.errors import exception_handlers
from aitbc_api.key_events import KeyEventFollower
from aitbc_api.middleware import RequestIdMiddleware
from aitbc_api.routes.accounts import sign_up
from aitbc_api.routes.api_keys import ApiKeysController
from aitbc_api.routes.proxy import forward
from aitbc_api.settings import Settings, get_settings

log = logging.getLogger("aitbc.api")


async def _connect_nats(settings: Settings, cache: AuthCache) -> nats.NATS:
    async def reconnected() -> None:
        # Events may have passed while we were away: forget what they could have changed.
        log.warning("reconnected to NATS; auth cache cleared")
        cache.clear()

    async def disconnected() -> None:
        log.warning("disconnected from NATS")

    async def error(exc: Exception) -> None:
        log.debug("NATS: %s", exc)

    deadline = asyncio.get_running_loop().time() + 60
    while True:
        try:
            return await nats.connect(
                settings.nats_url,
                name="aitbc-api",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                reconnected_cb=reconnected,
                disconnected_cb=disconnected,
                error_cb=error,
            )
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("waiting for NATS at %s", settings.nats_url)
            await asyncio.sleep(1)


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
        nc = await _connect_nats(settings, cache)
        keys = KeysClient(nc, settings.keys_timeout)
        follower = KeyEventFollower(nc, cache)
        follower.start()
        timeout = httpx.Timeout(settings.upstream_timeout, connect=settings.upstream_connect_timeout)
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as upstream:
            app.state.update(
                settings=settings,
                keys=keys,
                authenticator=Authenticator(cache, keys),
                follower=follower,
                upstream=upstream,
                nats=nc,
            )
            try:
                yield
            finally:
                await follower.stop()
                await nc.drain()

    openapi = OpenAPIConfig(
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
    return Litestar(
        route_handlers=[sign_up, ApiKeysController, forward],
        lifespan=[lifespan],
        exception_handlers=exception_handlers,
        middleware=[DefineMiddleware(RequestIdMiddleware)],
        openapi_config=openapi,
        request_max_body_size=settings.max_body_bytes,
    )
