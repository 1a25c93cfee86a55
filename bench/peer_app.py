"""Scenario D, the peer: what a user would build instead of the edge on the same framework.

A Litestar app with Litestar's own `RateLimitMiddleware` on a Redis store (`RedisStore`, on a
redis-server the harness starts), an API-key guard that looks the key's SHA-256 hash up in a
SQLite database (SQLAlchemy async, aiosqlite) on every request, and the same forwarding as the
edge (aitbc_api.proxy): the edge's pooled upstream connections, the answer passed on by the
edge's own `Relay`, the key removed and the caller's identity added, signed as the edge signs it
(aitbc_contracts.identity, with the secret the Coordinator checks it with). Served like every
other server in the benchmark: uvicorn, one worker, uvloop and httptools, no access log.

Its limits are per key (the middleware runs before the guard, so it cannot know the account),
and they are not exact across processes: the middleware's lock is per process, and its read
and write to Redis are two round trips.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import sqlalchemy as sa
from litestar import Litestar, Request, route
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.stores.redis import RedisStore
from litestar.types import Guard
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aitbc_api.proxy.forward import upstream_pool
from aitbc_api.proxy.relay import Relay
from aitbc_api.proxy.upstream import UpstreamPool
from aitbc_api.settings import Settings
from aitbc_contracts.identity import (
    ACCOUNT_HEADER,
    IDENTITY_HEADER,
    KEY_HEADER,
    REQUEST_ID_HEADER,
    UpstreamIdentity,
)
from aitbc_runtime.bus_access import read_secret_file

metadata = sa.MetaData()
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("plan", sa.String(20), nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

_DROP = frozenset(
    name.lower().encode()
    for name in ("connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
                 "host", "content-length", "expect", "x-api-key", ACCOUNT_HEADER, KEY_HEADER,
                 REQUEST_ID_HEADER, IDENTITY_HEADER)
)  # fmt: skip


def key_hash(request: Request[Any, Any, Any]) -> str:
    """The rate-limit identity: the presented key's hash (never the key itself in Redis)."""
    key = request.headers.get("x-api-key", "")
    return hashlib.sha256(key.encode()).hexdigest()


def create_database(path: str, rows: Iterable[tuple[str, str, str]]) -> None:
    """(key hash, account id, plan) rows, for the harness to fill before the peer starts."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS api_keys (key_hash VARCHAR(64) PRIMARY KEY, "
            "account_id VARCHAR(64) NOT NULL, plan VARCHAR(20) NOT NULL, "
            "revoked BOOLEAN NOT NULL DEFAULT 0)"
        )
        db.executemany(
            "INSERT OR REPLACE INTO api_keys (key_hash, account_id, plan) VALUES (?, ?, ?)", rows
        )


def create_app(
    database_url: str, redis_url: str, upstream_url: str, limit: int, identity: UpstreamIdentity
) -> Litestar:
    engine: AsyncEngine = create_async_engine(database_url)
    redis = Redis.from_url(redis_url)
    rate_limit = RateLimitConfig(rate_limit=("minute", limit), identifier_for_request=key_hash)
    return Litestar(
        route_handlers=[forwarder(identity)],
        guards=[key_guard(engine)],
        middleware=[rate_limit.middleware],
        stores={"rate_limit": RedisStore(redis, namespace="peer")},
        lifespan=[lifespan(redis, engine, upstream_url)],
    )


def key_guard(engine: AsyncEngine) -> Guard:
    """The presented key's hash looked up in the database, on every request."""
    lookup = sa.select(api_keys.c.account_id, api_keys.c.revoked).where(
        api_keys.c.key_hash == sa.bindparam("key_hash")
    )

    async def api_key_guard(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        key = connection.headers.get("x-api-key")
        if not key:
            raise NotAuthorizedException("missing API key")
        digest = hashlib.sha256(key.encode()).hexdigest()
        async with engine.connect() as conn:
            row = (await conn.execute(lookup, {"key_hash": digest})).first()
        if row is None or row.revoked:
            raise NotAuthorizedException("invalid API key")
        connection.scope["state"]["account_id"] = row.account_id

    return api_key_guard


def forwarder(identity: UpstreamIdentity) -> HTTPRouteHandler:
    """Every /v1/... request upstream, without the key, with the caller's identity signed."""

    @route("/v1/{path:path}", http_method=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def forward(request: Request[Any, Any, Any], path: str) -> Relay:
        pool: UpstreamPool = request.app.state.upstream
        headers = [(k, v) for k, v in request.scope["headers"] if k not in _DROP]
        account, request_id = request.scope["state"]["account_id"], os.urandom(16).hex()
        signed = identity.sign(account, "", request_id, time.time())
        headers += [(ACCOUNT_HEADER.lower().encode(), account.encode())]
        headers += [(REQUEST_ID_HEADER.lower().encode(), request_id.encode())]
        headers.append((IDENTITY_HEADER.lower().encode(), signed.encode()))
        query = request.scope["query_string"]
        target = b"/v1" + path.encode() + (b"?" + query if query else b"")
        body = None if request.method in ("GET", "DELETE") else await request.body()
        upstream = await pool.request(request.method, target, headers, body)
        return Relay(upstream)

    return forward


def lifespan(
    redis: Redis, engine: AsyncEngine, upstream_url: str
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The upstream connections, made as the edge makes its own; Redis and the engine closed
    after."""

    @asynccontextmanager
    async def running(app: Litestar) -> AsyncIterator[None]:
        app.state.upstream = upstream = upstream_pool(Settings(upstream_url=upstream_url))
        try:
            yield
        finally:
            await upstream.close()
            await redis.aclose()
            await engine.dispose()

    return running


def run() -> None:
    import uvicorn

    env = os.environ
    app = create_app(
        env["PEER_DATABASE_URL"],
        env["PEER_REDIS_URL"],
        env["UPSTREAM_URL"].rstrip("/"),
        int(env.get("PEER_LIMIT", "100000000")),
        UpstreamIdentity(read_secret_file(env["UPSTREAM_IDENTITY_SECRET_FILE"], "secret")),
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(env["PEER_PORT"]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=env.get("LOG_LEVEL", "info").lower(),
        lifespan="on",
    )


if __name__ == "__main__":
    run()
