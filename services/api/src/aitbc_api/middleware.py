"""Outermost ASGI layer: a request id on every response, and an access log without secrets."""

from __future__ import annotations

import logging
import re
import time
import uuid

from litestar.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_SCOPE_KEY = "aitbc.request_id"
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

access_log = logging.getLogger("aitbc.api.access")


def request_id_of(scope: Scope) -> str:
    return str(scope.get(REQUEST_ID_SCOPE_KEY, ""))  # type: ignore[call-overload]


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _VALID_REQUEST_ID.fullmatch(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Takes a well-formed incoming X-Request-Id or makes one, and echoes it on the response.

    The access log names the path only: the query string may hold an `api_key`.
    """

    def __init__(self, app: ASGIApp, log_requests: bool = True) -> None:
        self.app = app
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        scope[REQUEST_ID_SCOPE_KEY] = request_id  # type: ignore[literal-required]
        header = (b"x-request-id", request_id.encode("ascii"))
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.log_requests and access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    '%s %s %s %.1fms request_id=%s',
                    scope["method"],
                    scope["path"][:256],
                    status,
                    (time.perf_counter() - started) * 1000,
                    request_id,
                )
