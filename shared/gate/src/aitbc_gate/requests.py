"""Outermost ASGI layer: who the client is (the socket's peer, or what trusted proxies say:
aitbc_gate.proxies), per-request context, a request id and rate-limit headers on every
response (and HSTS on HTTPS ones), the access log (without secrets), the request's server span
with tracing on (aitbc_gate.request_spans), and the usage event once the response is
sent. Every line logged while a request is handled carries its id
(aitbc_runtime.logs.REQUEST_ID), and its trace id with tracing on."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Histogram

from aitbc_contracts.identity import REQUEST_ID_PATTERN
from aitbc_contracts.messages import Code
from aitbc_contracts.usage import Outcome
from aitbc_gate import metrics
from aitbc_gate.errors import ApiError
from aitbc_gate.ids import new_id
from aitbc_gate.proxies import client_address
from aitbc_gate.request_spans import RequestSpan, client_link
from aitbc_gate.routes import served_path
from aitbc_gate.types import ASGIApp, Message, Receive, Scope, Send
from aitbc_gate.usage_events import Served
from aitbc_runtime import tracing
from aitbc_runtime.logs import REQUEST_ID

if TYPE_CHECKING:
    from aitbc_gate.auth import Principal
    from aitbc_gate.core import Gate, GateSlot
    from aitbc_gate.limits import Verdict
    from aitbc_gate.proxies import TrustedProxies

CONTEXT_KEY = "aitbc"
_VALID_REQUEST_ID = re.compile(REQUEST_ID_PATTERN.encode())

access_log = logging.getLogger("aitbc.api.access")


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float
    gate: Gate  # the process's running parts
    keys: list[str]  # the X-API-Key headers' values (aitbc_gate.auth.presented_key)
    principal: Principal | None = None
    verdict: Verdict | None = None
    headers: Sequence[tuple[bytes, bytes]] = ()  # the rate-limit headers, once decided
    recorded: bool = False  # its usage event is made


def context_of(scope: Scope) -> RequestContext:
    context: RequestContext = scope[CONTEXT_KEY]
    return context


def request_id_of(scope: Scope) -> str:
    return context_of(scope).request_id


def read_head(scope: Scope) -> tuple[str, bool, list[str]]:
    """In one pass over the headers: the request's id (the client's X-Request-Id when it is a
    sane one, else a new one), whether a body follows the head (HTTP/1.1: only with
    Content-Length or Transfer-Encoding), and the API keys in X-API-Key headers."""
    request_id, has_body, keys = "", False, []
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            keys.append(value.decode("latin-1"))
        elif name == b"x-request-id":
            if not request_id and _VALID_REQUEST_ID.fullmatch(value):
                request_id = value.decode("ascii")
        elif name == b"content-length":
            has_body = has_body or value.strip() != b"0"
        elif name == b"transfer-encoding":
            has_body = True
    return request_id or new_id(), has_body, keys


class RequestLayer:
    """The request layer around `app`, the gate it reads from `slot` once it runs. The path
    alone goes to the access log (when `access_log` is on): the query may hold an `api_key`.
    `body_timeout`: seconds for a whole request body (None: the server's own bounds only).
    `timed`: each request's duration in aitbc_http_request_duration_seconds (an app with the
    gate has its own request metrics; a histogram's observation costs about 1-2 us)."""

    def __init__(
        self,
        app: ASGIApp,
        slot: GateSlot,
        *,
        require_https: bool = False,
        body_timeout: float | None = None,
        proxies: TrustedProxies | None = None,
        hsts_max_age: int = 0,
        access_log: bool = True,
        timed: bool = True,
    ) -> None:
        self.app = app
        self.slot = slot
        self.require_https = require_https
        self.body_timeout = body_timeout
        self.proxies = proxies if proxies is not None and proxies.networks else None
        hsts = (b"strict-transport-security", b"max-age=%d" % hsts_max_age)
        self.on_https = (hsts,) if hsts_max_age > 0 else ()
        self.access_log = access_log
        self.timed = timed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.proxies is not None:
            self.proxies.resolve(scope)
        if self.require_https and scope["scheme"] != "https":
            await answer(send, _HTTPS_REQUIRED)
            return
        gate = self.slot.gate
        if gate is None:  # not started, or stopped: nothing can be checked
            await answer(send, _NOT_RUNNING)
            return
        load = gate.load
        load.in_flight += 1
        request_id, has_body, keys = read_head(scope)
        context = RequestContext(request_id, time.perf_counter(), gate, keys)
        scope[CONTEXT_KEY] = context
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
            if has_body and self.body_timeout is not None:  # nothing to trickle without a body
                receive = _body_deadline(receive, self.body_timeout)
            await self.app(scope, receive, send_with_headers)
        finally:
            load.in_flight -= 1
            seconds = time.perf_counter() - context.started
            if self.timed:
                _timed(scope, status).observe(seconds)
            latency_ms = seconds * 1000
            if self.access_log and access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %s %.1fms request_id=%s client=%s",
                    scope["method"], scope["path"][:256], status, latency_ms, context.request_id,
                    client_address(scope) or "-",
                )  # fmt: skip
            if _recordable(context):  # no response, or one cut short
                _record(scope, context, status or 500, latency_ms)
            if span is not None:  # after the access log, whose line names its trace
                span.end(template_of(scope), status or 500)
            REQUEST_ID.reset(logged_as)


# Label values a client cannot multiply: a method outside these is "other", a path that no
# route matched is "unmatched" (its template is the route's, never the path itself).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_series: dict[tuple[str, str, int], Histogram] = {}


def _method(method: str) -> str:
    return method if method in _METHODS else "other"


def template_of(scope: Scope) -> str:
    """The template of the route the app matched ("" for none): Litestar's `path_template`,
    Starlette's (and FastAPI's) route's `path`."""
    template = scope.get("path_template")
    if template is None:
        template = getattr(scope.get("route"), "path", "")
    return template if isinstance(template, str) else ""


def _timed(scope: Scope, status: int) -> Histogram:
    """The request-duration series of the request's route template, method and status."""
    method = scope["method"]
    route = template_of(scope) or "unmatched"
    key = (route, method, status)
    series = _series.get(key)
    if series is None:
        series = _series[key] = metrics.REQUESTS.labels(route, _method(method), str(status or 500))
    return series


def _span(scope: Scope, request_id: str) -> RequestSpan:
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

    async def guarded() -> Message:
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


_HTTPS_REQUIRED = ApiError(403, Code.HTTPS_REQUIRED, "This service answers over HTTPS only")
_NOT_RUNNING = ApiError(
    503, Code.SERVICE_UNAVAILABLE, "The API key gate is not running; try again shortly"
)


async def answer(send: Send, error: ApiError) -> None:
    """`error` as the whole response: its status and headers, and the error body."""
    body = error.body()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _recordable(context: RequestContext) -> bool:
    """An authenticated, decided request whose usage event is not made yet."""
    return not context.recorded and context.principal is not None and context.verdict is not None


def _record(scope: Scope, context: RequestContext, status: int, latency_ms: float) -> None:
    assert context.principal is not None and context.verdict is not None
    context.recorded = True
    verdict = context.verdict
    outcome: Outcome
    decision = verdict.decision
    if verdict.mode == "exact" or verdict.mode == "shadow":
        if decision is not None and decision.admitted:
            outcome = "shadow_limited" if decision.shadow else "admitted"
        else:
            outcome = "limited"
    else:
        outcome = "fail_open" if verdict.mode == "fail-open" else "fail_closed"
    principal = context.principal
    context.gate.usage_publisher.emit(
        Served(
            context.request_id,
            principal.account_id,
            principal.key_id,
            scope["method"],
            template_of(scope),
            served_path(scope),
            status,
            latency_ms,
            outcome,
            time.time(),
        )
    )
