"""Every other `/v1/...` route: authenticate, then stream to the Coordinator and back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode

import aiohttp
from litestar import route
from litestar.enums import HttpMethod
from litestar.response import Stream
from litestar.types import Method

from aitbc_api.auth import API_KEY_HEADER, API_KEY_QUERY
from aitbc_api.errors import ApiError
from aitbc_api.gate import admit
from aitbc_api.middleware import request_id_of
from aitbc_api.settings import Settings
from aitbc_api.types import Req
from aitbc_contracts.messages import Code

# Never forwarded: hop-by-hop headers, the key, and identity headers a client might forge.
_DROP_REQUEST = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", API_KEY_HEADER,
        "x-account-id", "x-key-id", "x-request-id",
    }
)  # fmt: skip
_DROP_RESPONSE = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "trailer", "x-request-id",
     "date", "server"}  # the edge's server writes its own
)  # fmt: skip
_METHODS: list[HttpMethod | Method] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def _query_without_key(raw: bytes) -> str:
    query = raw.decode("latin-1")
    if API_KEY_QUERY not in query and "%" not in query:
        return query  # no spelling of api_key here (`api%5Fkey` is one, and authenticates)
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k != API_KEY_QUERY])


async def _body(request: Req, failed: list[Exception]) -> AsyncIterator[bytes]:
    """The client's body, streamed on. What reading it raises (too large: 413, too slow: 408) is
    kept in `failed`: aiohttp reports it as a client error of its own, which is no upstream's."""
    try:
        async for chunk in request.stream():
            yield chunk
    except Exception as exc:
        failed.append(exc)
        raise


async def _content(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    finally:
        upstream.release()  # the connection goes back to the pool


@route(
    "/v1/{path:path}",
    http_method=_METHODS,
    summary="Forwarded to the Coordinator",
    tags=["coordinator"],
    include_in_schema=False,
)
async def forward(request: Req, path: str) -> Stream:
    settings: Settings = request.app.state.settings
    full_path = "/v1" + path
    headers = [(k, v) for k, v in request.headers.items() if k not in _DROP_REQUEST]
    request_id = request_id_of(request.scope)
    headers.append(("x-request-id", request_id))
    if full_path not in settings.public_routes:
        caller = await admit(request)
        headers += [("x-account-id", caller.account_id), ("x-key-id", caller.key_id)]

    session: aiohttp.ClientSession = request.app.state.upstream
    query = _query_without_key(request.scope["query_string"])
    body_failed: list[Exception] = []
    try:
        upstream = await session.request(
            request.method,
            settings.upstream_url + full_path + ("?" + query if query else ""),
            headers=headers,
            data=None if request.method in _BODYLESS else _body(request, body_failed),
            allow_redirects=False,
        )
    except (TimeoutError, aiohttp.ClientError) as exc:
        if body_failed:
            raise body_failed[0] from None  # the client's fault, answered as such
        if isinstance(exc, TimeoutError):
            raise ApiError(
                504, Code.UPSTREAM_TIMEOUT, "The Coordinator did not answer in time"
            ) from exc
        raise ApiError(502, Code.UPSTREAM_UNAVAILABLE, "The Coordinator is unavailable") from exc

    return Stream(
        _content(upstream),
        status_code=upstream.status,
        headers={k: v for k, v in upstream.headers.items() if k.lower() not in _DROP_RESPONSE},
    )


def upstream_session(settings: Settings) -> aiohttp.ClientSession:
    """One pooled session for every forwarded request; bodies pass through untouched."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=30),
        timeout=aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.upstream_connect_timeout,
            sock_read=settings.upstream_timeout,
        ),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
    )
