"""Outermost ASGI layer: who the client is (the socket's peer, or what trusted proxies say:
aitbc_api.pipeline.proxies), per-request context, a request id and rate-limit headers on every
response (and HSTS on HTTPS ones), the access log (without secrets), the request's server span
with tracing on (aitbc_api.pipeline.request_spans), and the usage event once the response is
sent. Every line logged while a request is handled carries its id
(aitbc_runtime.logs.REQUEST_ID), and its trace id with tracing on."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseStartEvent,
    HTTPScope,
    Message,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)
from prometheus_client import Histogram

from aitbc_api import metrics
from aitbc_api.errors import ApiError
from aitbc_api.ids import new_id
from aitbc_api.pipeline.proxies import client_address
from aitbc_api.pipeline.request_spans import RequestSpan, client_link
from aitbc_api.pipeline.usage_events import Served
from aitbc_contracts.messages import Code
from aitbc_contracts.usage import Outcome
from aitbc_runtime import tracing
from aitbc_runtime.logs import REQUEST_ID

if TYPE_CHECKING:
    from aitbc_api.pipeline.auth import Principal
    from aitbc_api.pipeline.edge import Edge
    from aitbc_api.pipeline.limits import Verdict
    from aitbc_api.pipeline.proxies import TrustedProxies

CONTEXT_KEY = "aitbc"
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

access_log = logging.getLogger("aitbc.api.access")


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float
    edge: Edge  # the app's running parts
    principal: Principal | None = None
    verdict: Verdict | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    recorded: bool = False  # its usage event is made


def context_of(scope: Scope) -> RequestContext:
    return scope[CONTEXT_KEY]  # type: ignore[literal-required, no-any-return]


def request_id_of(scope: Scope) -> str:
    return context_of(scope).request_id


def _read_head(scope: Scope) -> tuple[str, bool]:
    """The request's id (the client's X-Request-Id when it is a sane one, else a new one), and
    whether a body follows the head (HTTP/1.1: only with Content-Length or Transfer-Encoding)."""
    request_id, has_body = "", False
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if not request_id and _VALID_REQUEST_ID.fullmatch(value):
                request_id = value.decode("ascii")
        elif name == b"content-length":
            has_body = has_body or value.strip() != b"0"
        elif name == b"transfer-encoding":
            has_body = True
    return request_id or new_id(), has_body


class EdgeMiddleware:
    """The path alone goes to the access log: the query string may hold an `api_key`."""

    def __init__(
        self,
        app: ASGIApp,
        require_https: bool = False,
        body_timeout: float = 60.0,
        proxies: TrustedProxies | None = None,
        hsts_max_age: int = 0,
    ) -> None:
        self.app = app
        self.require_https = require_https
        self.body_timeout = body_timeout
        self.proxies = proxies if proxies is not None and proxies.networks else None
        hsts = (b"strict-transport-security", b"max-age=%d" % hsts_max_age)
        self.on_https = (hsts,) if hsts_max_age > 0 else ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        if self.proxies is not None:
            self.proxies.resolve(scope)
        if self.require_https and scope["scheme"] != "https":
            await _refuse_plain_http(send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        edge: Edge = scope["app"].state.edge
        load = edge.load
        load.in_flight += 1
        request_id, has_body = _read_head(scope)
        context = RequestContext(request_id, time.perf_counter(), edge)
        scope[CONTEXT_KEY] = context  # type: ignore[literal-required]
        logged_as = REQUEST_ID.set(request_id)
        span = _span(scope, request_id) if tracing.enabled else None
        status = 0
        secure = self.on_https if scope["scheme"] == "https" else ()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", context.request_id.encode("ascii")),
                    *context.headers,
                    *secure,
                ]
            elif not message.get("more_body", False) and _recordable(context):
                # Recorded (and journaled, with a spool) before the response's end goes out: a
                # client that got all of it is counted even if the edge is killed right after.
                _record(scope, context, status, (time.perf_counter() - context.started) * 1000)
            await send(message)

        try:
            if has_body:  # a deadline for the body; without one, nothing is there to trickle
                receive = _body_deadline(receive, self.body_timeout)
            await self.app(scope, receive, send_with_headers)
        finally:
            load.in_flight -= 1
            seconds = time.perf_counter() - context.started
            _timed(scope, status).observe(seconds)
            latency_ms = seconds * 1000
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %s %.1fms request_id=%s client=%s",
                    scope["method"], scope["path"][:256], status, latency_ms, context.request_id,
                    client_address(scope) or "-",
                )  # fmt: skip
            if _recordable(context):  # no response, or one cut short
                _record(scope, context, status or 500, latency_ms)
            if span is not None:  # after the access log, whose line names its trace
                span.end(scope.get("path_template"), status or 500)  # type: ignore[arg-type]
            REQUEST_ID.reset(logged_as)


# Label values a client cannot multiply: a method outside these is "other", a path that no
# route matched is "unmatched" (its template is the route's, never the path itself).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_series: dict[tuple[str, str, int], Histogram] = {}


def _method(method: str) -> str:
    return method if method in _METHODS else "other"


def _timed(scope: HTTPScope, status: int) -> Histogram:
    """The request-duration series of the request's route template, method and status."""
    method = scope["method"]
    route: str = scope.get("path_template") or "unmatched"  # type: ignore[assignment]
    key = (route, method, status)
    series = _series.get(key)
    if series is None:
        series = _series[key] = metrics.REQUESTS.labels(route, _method(method), str(status or 500))
    return series


def _span(scope: HTTPScope, request_id: str) -> RequestSpan:
    """The request's server span (tracing on), current until the middleware ends it."""
    return RequestSpan(
        _method(scope["method"]), scope["scheme"], request_id, client_link(scope["headers"])
    )


def _body_deadline(receive: Receive, seconds: float) -> Receive:
    """`receive`, with `seconds` for the whole request body from the first read of it: a client
    that trickles its body is answered 408 and its connection closed (uvicorn has no such limit).
    Once the body is complete, reads (waiting for a disconnect) are not limited."""
    deadline: float | None = None
    complete = False

    async def guarded() -> ReceiveMessage:
        nonlocal deadline, complete
        if complete:
            return await receive()
        loop = asyncio.get_running_loop()
        deadline = deadline or loop.time() + seconds
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            complete = True
            raise ApiError(
                408,
                Code.REQUEST_TIMEOUT,
                f"The request body did not arrive within {seconds:g} seconds",
                headers={"Connection": "close"},
            ) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            complete = True
        return message

    return guarded


async def _refuse_plain_http(send: Send) -> None:
    body = b'{"error":{"code":"HTTPS_REQUIRED","message":"This service answers over HTTPS only"}}'
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 403,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _recordable(context: RequestContext) -> bool:
    """An authenticated, decided request whose usage event is not made yet."""
    return not context.recorded and context.principal is not None and context.verdict is not None


def _record(scope: HTTPScope, context: RequestContext, status: int, latency_ms: float) -> None:
    assert context.principal is not None and context.verdict is not None
    context.recorded = True
    verdict = context.verdict
    outcome: Outcome
    if verdict.mode == "exact":
        outcome = "admitted" if verdict.decision and verdict.decision.admitted else "limited"
    else:
        outcome = "fail_open" if verdict.mode == "fail-open" else "fail_closed"
    principal = context.principal
    context.edge.usage_publisher.emit(
        Served(
            context.request_id,
            principal.account_id,
            principal.key_id,
            scope["method"],
            scope.get("path_template", ""),  # type: ignore[arg-type]
            scope["path"],
            status,
            latency_ms,
            outcome,
            time.time(),
        )
    )
