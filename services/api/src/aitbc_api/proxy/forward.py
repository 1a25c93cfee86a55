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

from litestar import route
from litestar.enums import HttpMethod
from litestar.types import Method

from aitbc_api.proxy.paths import forwarded_path
from aitbc_api.proxy.relay import Relay, named_by_connection
from aitbc_api.proxy.upstream import (
    Body,
    UpstreamFailed,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimedOut,
)
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
from aitbc_gate.proxies import client_address
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
    upstream: UpstreamPool  # the connections every forwarded request goes through
    identity: UpstreamIdentity | None = None  # signs each caller's identity for the upstream


# Never forwarded: hop-by-hop headers (and any the client's Connection header names), the body's
# framing (the upstream client writes its own), the key, identity headers a client might forge,
# the client's own say about where it is (the edge sends what it believes: aitbc_gate.proxies),
# and the client's trace context (with tracing on, the edge sends its own:
# aitbc_gate.request_spans). As the ASGI scope has them: lowercase.
_DROP_REQUEST = frozenset(
    name.lower().encode("latin-1")
    for name in (
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
        "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "host",
        "content-length", "expect",
        API_KEY_HEADER, ACCOUNT_HEADER, KEY_HEADER, REQUEST_ID_HEADER, IDENTITY_HEADER,
        "traceparent", "tracestate",
        "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip",
    )
)  # fmt: skip
_METHODS: list[HttpMethod | Method] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})  # RFC 9110 safe methods: no change upstream
# Speculate only while the edge has capacity to spare: with more requests in flight than this,
# latency is queueing, and a second concurrent task per request would only cost throughput.
SPECULATE_UP_TO = 8
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode("ascii")
_FORWARDED_FOR, _FORWARDED_PROTO = b"x-forwarded-for", b"x-forwarded-proto"
_ACCOUNT = ACCOUNT_HEADER.lower().encode("ascii")
_KEY = KEY_HEADER.lower().encode("ascii")
_IDENTITY = IDENTITY_HEADER.lower().encode("ascii")


async def _client_body(receive: Receive, limit: int) -> Body:
    """The client's body: bytes when it came in one message (most do), else streamed on as it
    comes, at most `limit` bytes."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _client_left()
    first: bytes = message.get("body", b"")
    if len(first) > limit:
        raise _too_large(limit)
    if not message.get("more_body", False):
        return first
    return _rest_of_body(first, receive, limit)


async def _rest_of_body(first: bytes, receive: Receive, limit: int) -> AsyncIterator[bytes]:
    """A body that comes in several messages, streamed on as it comes; 413 past `limit`, 400
    if the client leaves before its end (a body too slow is the request layer's 408)."""
    received = len(first)
    if first:
        yield first
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _client_left()
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _client_left() -> ApiError:
    return ApiError(400, Code.VALIDATION_ERROR, "The client left during its body")


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, Code.PAYLOAD_TOO_LARGE, f"The request body is over this service's {limit} bytes"
    )


def _coded_body() -> ApiError:
    """A coding besides chunked (`gzip, chunked`): hop-by-hop, it would not reach the upstream,
    which would take the coded bytes for the body (RFC 9112 6.1: not understood, refused)."""
    return ApiError(
        501, Code.VALIDATION_ERROR, "The request's transfer coding is not supported: only chunked"
    )


def _upstream_headers(scope: Scope, limit: int) -> tuple[list[tuple[bytes, bytes]], int | None]:
    """The request's headers the upstream is given, and the body's declared length (413 at
    once for one over `limit`; a body of no declared length is counted as it streams)."""
    headers, length, named = [], None, set()
    for name, value in scope["headers"]:
        if name not in _DROP_REQUEST:
            # `X_Account_Id` is `X-Account-Id` to an upstream that maps names as CGI does
            if b"_" not in name or name.replace(b"_", b"-") not in _DROP_REQUEST:
                headers.append((name, value))
        elif name == b"content-length" and value.isdigit():
            length = int(value)
            if length > limit:
                raise _too_large(limit)
        elif name == b"connection":
            named |= named_by_connection(value)
        elif name == b"transfer-encoding" and value.strip().lower() != b"chunked":
            raise _coded_body()
    if named - _DROP_REQUEST:  # (most name only keep-alive or close)
        headers = [(name, value) for name, value in headers if name not in named]
    return headers, length


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
    target = forwarded_path(scope.get("raw_path") or scope["path"].encode())
    query = query_without_key(scope["query_string"])
    if query:
        target += b"?" + query
    headers, length = _upstream_headers(scope, settings.max_body_bytes)
    headers += [
        (_REQUEST_ID, context.request_id.encode("ascii")),
        (_FORWARDED_FOR, client_address(scope).encode("latin-1")),  # as TRUSTED_PROXIES say
        (_FORWARDED_PROTO, scope["scheme"].encode("latin-1")),
    ]
    if tracing.enabled:  # the request's span: the Coordinator's spans are its children
        headers += [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in tracing.headers().items()
        ]
    upstream = Upstream(method, target, headers, length, receive, forwarding)
    if scope["path"] in settings.public_paths:
        return Relay(await upstream.send())
    caller = await data_plane_caller(scope)
    now = time.time()
    headers += [(_ACCOUNT, caller.account_id.encode()), (_KEY, caller.key_id.encode())]
    if forwarding.identity is not None:  # signed: no one else can claim the account
        signed = forwarding.identity.sign(caller.account_id, caller.key_id, context.request_id, now)
        headers.append((_IDENTITY, signed.encode()))
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
    scope: Scope, send: Awaitable[UpstreamResponse], caller: Principal
) -> UpstreamResponse:
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


def _drop_unread(sending: asyncio.Future[UpstreamResponse]) -> None:
    """A refused request's upstream answer, if it came: let go unread."""
    if not sending.cancelled() and sending.exception() is None:
        sending.result().release()


@dataclass(slots=True)
class Upstream:
    """One request's way to the upstream: its target (path and query), headers and body."""

    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    length: int | None  # the body's declared length, if the client declared one
    receive: Receive
    forwarding: Forwarding

    async def send(self) -> UpstreamResponse:
        """The request, sent upstream; its response head read. 502/504 when it fails."""
        body: Body = None
        length = None  # a body these methods are sent with stays here: none is announced
        if self.method not in _BODYLESS:
            body = await _client_body(self.receive, self.forwarding.settings.max_body_bytes)
            length = self.length
        try:
            return await self.forwarding.upstream.request(
                self.method, self.target, self.headers, body, length
            )
        except UpstreamTimedOut as exc:
            raise ApiError(
                504, Code.UPSTREAM_TIMEOUT, "The Coordinator did not answer in time"
            ) from exc
        except UpstreamFailed as exc:
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


def upstream_pool(settings: Settings) -> UpstreamPool:
    """The connections every forwarded request goes through; bodies pass through untouched."""
    return UpstreamPool(
        settings.upstream_url,
        connect_timeout=settings.upstream_connect_timeout,
        timeout=settings.upstream_timeout,
        keepalive=settings.upstream_keepalive,
    )
