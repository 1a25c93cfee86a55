"""Every other `/v1/...` route: authenticate, then stream to the Coordinator and back.

The forwarded path is the one the benchmarks measure: it takes what it needs from the request's
context (the core's running parts, aitbc_gate.core), and resolves no dependency."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import aiohttp
from litestar import route
from litestar.enums import HttpMethod
from litestar.types import Method
from yarl import URL

from aitbc_api.proxy.paths import forwarded_path
from aitbc_api.proxy.relay import Relay
from aitbc_api.settings import Settings
from aitbc_api.types import Req
from aitbc_contracts.identity import (
    ACCOUNT_HEADER,
    IDENTITY_HEADER,
    KEY_HEADER,
    REQUEST_ID_HEADER,
    UpstreamIdentity,
)
from aitbc_contracts.messages import Code
from aitbc_gate.admission import data_plane_caller, limit
from aitbc_gate.auth import API_KEY_HEADER, Principal, query_without_key
from aitbc_gate.errors import ApiError
from aitbc_gate.requests import context_of
from aitbc_runtime import tracing
from aitbc_runtime.bus_access import read_secret_file

log = logging.getLogger("aitbc.api")

FORWARDING = "forwarding"  # the app state's key


@dataclass(frozen=True, slots=True)
class Forwarding:
    """What forwarding needs beside the gate, made once by the lifespan."""

    settings: Settings
    upstream: aiohttp.ClientSession  # the pooled session every forwarded request goes through
    identity: UpstreamIdentity | None = None  # signs each caller's identity for the upstream


# Never forwarded: hop-by-hop headers, the key, identity headers a client might forge, and the
# client's trace context (with tracing on, the edge sends its own: aitbc_gate.request_spans).
_DROP_REQUEST = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", API_KEY_HEADER,
        ACCOUNT_HEADER, KEY_HEADER, REQUEST_ID_HEADER, IDENTITY_HEADER,
        "traceparent", "tracestate",
    }
)  # fmt: skip
_METHODS: list[HttpMethod | Method] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})  # RFC 9110 safe methods: no change upstream
# Speculate only while the edge has capacity to spare: with more requests in flight than this,
# latency is queueing, and a second concurrent task per request would only cost throughput.
SPECULATE_UP_TO = 8


async def _body(request: Req, failed: list[Exception]) -> AsyncIterator[bytes]:
    """The client's body, streamed on. What reading it raises (too large: 413, too slow: 408) is
    kept in `failed`: aiohttp reports it as a client error of its own, which is no upstream's."""
    try:
        async for chunk in request.stream():
            yield chunk
    except Exception as exc:
        failed.append(exc)
        raise


@route(
    "/v1/{path:path}",
    http_method=_METHODS,
    summary="Forwarded to the Coordinator",
    tags=["coordinator"],
    include_in_schema=False,
)
async def forward(request: Req) -> Relay:
    scope = request.scope
    context = context_of(scope)
    gate = context.gate
    forwarding: Forwarding = request.app.state[FORWARDING]
    settings = forwarding.settings
    # The raw path goes upstream, as sent: the decoded one, resolved, could leave /v1 (400).
    full_path = forwarded_path(scope.get("raw_path") or scope["path"].encode())
    headers = [(k, v) for k, v in request.headers.items() if k not in _DROP_REQUEST]
    headers.append((REQUEST_ID_HEADER, context.request_id))
    if tracing.enabled:  # the request's span: the Coordinator's spans are its children
        headers += tracing.headers().items()
    if scope["path"] in settings.public_paths:
        upstream = await _send(request, forwarding, full_path, headers)
    else:
        caller = await data_plane_caller(scope)
        now = time.time()
        headers += [(ACCOUNT_HEADER, caller.account_id), (KEY_HEADER, caller.key_id)]
        if forwarding.identity is not None:  # signed: no one else can claim the account
            signed = forwarding.identity.sign(
                caller.account_id, caller.key_id, context.request_id, now
            )
            headers.append((IDENTITY_HEADER, signed))
        if (
            settings.speculative_forwarding
            and request.method in _SAFE
            and gate.load.in_flight <= SPECULATE_UP_TO
            and gate.limiter.worth_speculating(caller.account_id, now)
        ):
            sending = _send(request, forwarding, full_path, headers)
            upstream = await _send_while_deciding(request, sending, caller)
        else:
            await limit(scope, caller)
            upstream = await _send(request, forwarding, full_path, headers)
    return Relay(upstream)


async def _send_while_deciding(
    request: Req, send: Awaitable[aiohttp.ClientResponse], caller: Principal
) -> aiohttp.ClientResponse:
    """A safe request of an authenticated caller whose account has headroom goes upstream
    while its rate-limit decision is taken, so the client waits for the longer of the two, not
    both. The decision still comes first: refused (429, or 503 failing closed), the upstream's
    answer is thrown away unread. Never for a method that may change anything upstream."""
    sending = asyncio.ensure_future(send)
    try:
        await limit(request.scope, caller)
    except BaseException:
        sending.cancel()
        sending.add_done_callback(_drop_unread)  # not awaited: nothing here can be swallowed
        raise
    return await sending


def _drop_unread(sending: asyncio.Future[aiohttp.ClientResponse]) -> None:
    """A refused request's upstream answer, if it came: its connection is closed unread."""
    if not sending.cancelled() and sending.exception() is None:
        sending.result().close()


async def _send(
    request: Req, forwarding: Forwarding, full_path: str, headers: list[tuple[str, str]]
) -> aiohttp.ClientResponse:
    """The request, sent upstream; its response head read. 502/504 when the upstream fails."""
    settings = forwarding.settings
    query = query_without_key(request.scope["query_string"]).decode("latin-1")
    body_failed: list[Exception] = []
    url = settings.upstream_url + full_path + ("?" + query if query else "")
    try:
        return await forwarding.upstream.request(
            request.method,
            URL(url, encoded=True),  # sent as it is: not re-quoted, no dot segment resolved
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


def upstream_identity(settings: Settings) -> UpstreamIdentity | None:
    """What signs each caller's identity for the upstream: the secret in
    UPSTREAM_IDENTITY_SECRET_FILE (refused unless only its owner may read it), read once.
    Unset: identities go unsigned, which the sample Coordinator refuses."""
    if not settings.upstream_identity_secret_file:
        log.warning(
            "UPSTREAM_IDENTITY_SECRET_FILE is not set: the Coordinator is sent unsigned "
            "identities (X-Account-Id alone), which only an upstream that trusts its network "
            "may believe"
        )
        return None
    path = settings.upstream_identity_secret_file
    return UpstreamIdentity(read_secret_file(path, "upstream identity secret"))


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
