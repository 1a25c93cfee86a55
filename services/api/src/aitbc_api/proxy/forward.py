"""Every other `/v1/...` path: authenticate, then stream to the Coordinator and back.

The forwarded path is the edge's hot path, and the one the benchmarks measure (B, C). It is an
ASGI app in front of the framework's router (aitbc_api.proxy.forwarder sends it every request
under /v1/ that no route of the edge's own answers): it reads the ASGI scope and `receive`
itself, and takes what it needs from the request's context (the core's running parts,
aitbc_gate.core) and the app's state, with no routing, request or response object of the
framework's in between."""

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
from aitbc_gate.types import Receive, Scope
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
# As the ASGI scope has them: lowercase bytes.
_DROP_REQUEST = frozenset(
    name.lower().encode("latin-1")
    for name in (
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", API_KEY_HEADER,
        ACCOUNT_HEADER, KEY_HEADER, REQUEST_ID_HEADER, IDENTITY_HEADER,
        "traceparent", "tracestate",
    )
)  # fmt: skip
_METHODS: list[HttpMethod | Method] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})  # RFC 9110 safe methods: no change upstream
# Speculate only while the edge has capacity to spare: with more requests in flight than this,
# latency is queueing, and a second concurrent task per request would only cost throughput.
SPECULATE_UP_TO = 8


async def _body(receive: Receive, limit: int, failed: list[Exception]) -> AsyncIterator[bytes]:
    """The client's body, streamed on, at most `limit` bytes (413 beyond). What reading it
    raises (too large: 413, too slow: 408) is kept in `failed`: aiohttp reports it as a client
    error of its own, which is no upstream's."""
    received = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(400, Code.VALIDATION_ERROR, "The client left during its body")
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise _too_large(limit)
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
    except Exception as exc:
        failed.append(exc)
        raise


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, Code.PAYLOAD_TOO_LARGE, f"The request body is over this service's {limit} bytes"
    )


def _upstream_headers(scope: Scope, limit: int) -> list[tuple[str, str]]:
    """The request's headers the upstream is given; 413 at once for a declared body over
    `limit` (a chunked one is counted as it streams)."""
    headers = []
    for name, value in scope["headers"]:
        if name not in _DROP_REQUEST:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise _too_large(limit)
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
    return headers


@route(
    "/v1/{path:path}",
    http_method=_METHODS,
    summary="Forwarded to the Coordinator",
    tags=["coordinator"],
    include_in_schema=False,
)
async def forwarded_route(request: Req) -> Relay:
    """The forwarded routes' place in the router. aitbc_api.proxy.forwarder asks the router
    where each request goes and forwards those it sends here itself, before the router runs;
    one that reaches this handler (an app assembled without it) is forwarded the same way."""
    return await forward(request.scope, request.receive, request.app.state[FORWARDING])


async def forward(scope: Scope, receive: Receive, forwarding: Forwarding) -> Relay:
    """The request, checked and counted unless its path is public, sent upstream; the answer's
    relay. ApiError for a refusal, a path that could leave /v1 or an upstream that failed."""
    method = scope["method"]
    context = context_of(scope)
    gate = context.gate
    settings = forwarding.settings
    # The raw path goes upstream, as sent: the decoded one, resolved, could leave /v1 (400).
    full_path = forwarded_path(scope.get("raw_path") or scope["path"].encode())
    headers = _upstream_headers(scope, settings.max_body_bytes)
    headers.append((REQUEST_ID_HEADER, context.request_id))
    if tracing.enabled:  # the request's span: the Coordinator's spans are its children
        headers += tracing.headers().items()
    upstream = Upstream(scope, receive, forwarding, full_path, headers)
    if scope["path"] in settings.public_paths:
        return Relay(await upstream.send())
    caller = await data_plane_caller(scope)
    now = time.time()
    headers += [(ACCOUNT_HEADER, caller.account_id), (KEY_HEADER, caller.key_id)]
    if forwarding.identity is not None:  # signed: no one else can claim the account
        signed = forwarding.identity.sign(caller.account_id, caller.key_id, context.request_id, now)
        headers.append((IDENTITY_HEADER, signed))
    if (
        settings.speculative_forwarding
        and method in _SAFE
        and gate.load.in_flight <= SPECULATE_UP_TO
        and gate.limiter.worth_speculating(caller.account_id, now)
    ):
        return Relay(await _send_while_deciding(scope, upstream.send(), caller))
    await limit(scope, caller)
    return Relay(await upstream.send())


async def _send_while_deciding(
    scope: Scope, send: Awaitable[aiohttp.ClientResponse], caller: Principal
) -> aiohttp.ClientResponse:
    """A safe request of an authenticated caller whose account has headroom goes upstream
    while its rate-limit decision is taken, so the client waits for the longer of the two, not
    both. The decision still comes first: refused (429, or 503 failing closed), the upstream's
    answer is thrown away unread. Never for a method that may change anything upstream."""
    sending = asyncio.ensure_future(send)
    try:
        await limit(scope, caller)
    except BaseException:
        sending.cancel()
        sending.add_done_callback(_drop_unread)  # not awaited: nothing here can be swallowed
        raise
    return await sending


def _drop_unread(sending: asyncio.Future[aiohttp.ClientResponse]) -> None:
    """A refused request's upstream answer, if it came: its connection is closed unread."""
    if not sending.cancelled() and sending.exception() is None:
        sending.result().close()


@dataclass(slots=True)
class Upstream:
    """One request's way to the upstream: its URL, headers and body."""

    scope: Scope
    receive: Receive
    forwarding: Forwarding
    full_path: str
    headers: list[tuple[str, str]]

    async def send(self) -> aiohttp.ClientResponse:
        """The request, sent upstream; its response head read. 502/504 when it fails."""
        settings, method = self.forwarding.settings, self.scope["method"]
        query = query_without_key(self.scope["query_string"]).decode("latin-1")
        body_failed: list[Exception] = []
        body = None
        if method not in _BODYLESS:
            body = _body(self.receive, settings.max_body_bytes, body_failed)
        url = settings.upstream_url + self.full_path + ("?" + query if query else "")
        try:
            return await self.forwarding.upstream.request(
                method,
                URL(url, encoded=True),  # sent as it is: not re-quoted, no dot segment resolved
                headers=self.headers,
                data=body,
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            if body_failed:
                raise body_failed[0] from None  # the client's fault, answered as such
            if isinstance(exc, TimeoutError):
                raise ApiError(
                    504, Code.UPSTREAM_TIMEOUT, "The Coordinator did not answer in time"
                ) from exc
            raise ApiError(
                502, Code.UPSTREAM_UNAVAILABLE, "The Coordinator is unavailable"
            ) from exc


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
