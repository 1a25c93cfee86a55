"""The gate as ASGI middleware, in front of any ASGI app (Litestar, FastAPI, Starlette...):

    app = GateMiddleware(app)                       # any ASGI app
    app.add_middleware(GateMiddleware)              # FastAPI, Starlette

Every request to a path that is not public must present an API key of an active key; it is
counted against the key's limits exactly as at the edge (the same usage service, leases and
batched decisions) and answered with the same rate-limit headers, error bodies and usage
events. The app finds the caller in the request's state (`caller_of(scope)`, or
`request.state.aitbc_caller` in Starlette and Litestar); no header names it.

The gate connects to NATS and starts its parts when the server starts the app (the ASGI
lifespan), and stops them after the app's own shutdown; one that cannot start fails the
startup, saying why. A server that sends no lifespan events gets a gate started by the first
request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

import nats
from nats.aio.client import Client as NATS

from aitbc_gate.admission import data_plane_caller, limit
from aitbc_gate.auth import Principal, query_without_key
from aitbc_gate.core import GateSlot, running_gate
from aitbc_gate.errors import ApiError
from aitbc_gate.proxies import TrustedProxies
from aitbc_gate.requests import (
    CONTEXT_KEY,
    RequestContext,
    RequestLayer,
    answer,
    read_head,
)
from aitbc_gate.routes import route_path
from aitbc_gate.settings import GateSettings, PublicPaths
from aitbc_gate.types import ASGIApp, Message, Receive, Scope, Send
from aitbc_runtime.bus import connect

log = logging.getLogger("aitbc.gate")

CALLER = "aitbc_caller"  # the key of the caller in the request's state
RETRY_START = 5.0  # seconds after a failed start on a request before a request tries again


def caller_of(scope: Scope) -> Principal | None:
    """The caller the gate admitted for this request (None on a public path)."""
    state = scope.get("state")
    return state.get(CALLER) if state is not None else None


def without_key(scope: Scope) -> None:
    """The scope without the API key: not in its query string, not in its headers."""
    scope["query_string"] = query_without_key(scope["query_string"])
    context = scope.get(CONTEXT_KEY)  # none when the gate is not running
    if context is None or context.keys:
        scope["headers"] = [h for h in scope["headers"] if h[0] != b"x-api-key"]


class GateMiddleware:
    """`settings`: from the environment unless given. `public`: paths that need no key (an
    entry ending in `*`: the paths it starts); the settings' `public_routes` unless given.
    `admitted`: says whether a request was admitted already by someone the app trusts (an edge
    in front, whose signed identity the app checks): such a request is neither checked nor
    counted again."""

    def __init__(
        self,
        app: ASGIApp,
        settings: GateSettings | None = None,
        *,
        public: tuple[str, ...] | None = None,
        admitted: Callable[[Scope], bool] | None = None,
        name: str = "aitbc-gate",
    ) -> None:
        self.app = app
        # Settings that do not read fail the start, said in a line: Starlette builds its
        # middleware in the app's first call (the lifespan's), where an error raised would
        # make the server judge the app to have no lifespan, and serve it.
        self._unusable = ""
        if settings is None:
            try:
                settings = GateSettings.from_env()
            except ValueError as exc:  # BusAccessError too
                self._unusable, settings = str(exc), GateSettings()
        self.settings = settings
        self.public = settings.public_paths if public is None else PublicPaths(public)
        self.admitted = admitted
        self.name = name
        self.slot = GateSlot()
        self._layer = RequestLayer(
            self._gated,
            self.slot,
            proxies=TrustedProxies.of(settings.trusted_proxies, settings.trusted_proxy_headers),
            access_log=False,  # the app's server logs its requests, and times them
            timed=False,
        )
        self._running: AsyncExitStack | None = None
        self._starting = asyncio.Lock()
        self._retry_at = 0.0  # no start before (time.monotonic) after one that failed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self.slot.gate is None and self._running is None:
                await self._start_lazily()  # failing, the request layer answers 503
            if self.slot.gate is None:
                without_key(scope)  # the server logs the query the scope holds, 503 or not
            await self._layer(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif kind == "websocket":
            if route_path(scope) in self.public:
                without_key(scope)  # its server logs the handshake's query too
                await self.app(scope, receive, send)
            else:
                await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _gated(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Inside the request layer: the app, once the caller is checked and counted."""
        refused = await self._check(scope)
        if refused is not None:
            await answer(send, refused)
        else:
            await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket handshake is checked and counted as a request is; refused, it is
        closed before it is accepted (the server answers 403)."""
        if self.slot.gate is None:
            await self._start_lazily()
        gate = self.slot.gate
        if gate is None:
            without_key(scope)
            await send({"type": "websocket.close", "code": 1013})  # try again later
            return
        scope[CONTEXT_KEY] = RequestContext("", 0.0, gate, read_head(scope)[2])
        if await self._check(scope) is not None:
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)

    async def _check(self, scope: Scope) -> ApiError | None:
        """The caller checked and counted (and put in the request's state), unless the path is
        public or the request was admitted already; or why not. Then the key leaves the query
        string and the headers, as it leaves what the edge forwards: the app is given the
        caller, not the secret, and its server logs the query it sees (in the scope, whoever
        answered)."""
        refused = None
        try:
            admitted = self.admitted
            if route_path(scope) not in self.public and not (admitted and admitted(scope)):
                principal = await data_plane_caller(scope)
                await limit(scope, principal)
                scope.setdefault("state", {})[CALLER] = principal
        except ApiError as error:
            refused = error
        finally:  # whatever is raised: the server's 500 is logged with the scope's query
            without_key(scope)
        return refused

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's lifespan, with the gate started before the app's startup and stopped
        after its shutdown. A gate that cannot start fails the startup, the app's own never
        run: raised through the app, the error would make a server that detects lifespan
        support (uvicorn's default) judge the app to have none, and serve it without its
        startup."""
        first = await receive()
        if first["type"] == "lifespan.startup":
            try:
                await self.start()
            except Exception as exc:
                message = f"The API key gate could not start: {exc}"
                await send({"type": "lifespan.startup.failed", "message": message})
                return
        pending = [first]

        async def receiving() -> Message:
            return pending.pop() if pending else await receive()

        async def sending(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.stop()
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        finally:
            await self.stop()  # an app that ended its lifespan without a shutdown

    async def _start_lazily(self) -> None:
        """A start for a server that sends no lifespan events. One that failed is not tried
        again before RETRY_START: the requests that waited for it, and those that follow,
        are answered 503 at once rather than each after a wait of its own for NATS."""
        async with self._starting:
            now = time.monotonic()
            if self.slot.gate is None and self._running is None and now >= self._retry_at:
                try:
                    await self.start()
                except Exception as exc:
                    self._retry_at = time.monotonic() + RETRY_START
                    log.error("the API key gate could not start: %s", exc)

    async def start(self) -> None:
        """Starts the gate, as the app's lifespan does (for a caller that drives it itself)."""
        if self._running is not None:
            return
        if self._unusable:
            raise ValueError(self._unusable)
        parts = AsyncExitStack()
        try:
            nc = await self._connect()
            parts.push_async_callback(nc.drain)
            self.slot.gate = await parts.enter_async_context(running_gate(self.settings, nc))
        except BaseException:
            await parts.aclose()
            raise
        self._running = parts
        log.info("API key gate running in front of the app")

    async def _connect(self) -> NATS:
        """The connection to NATS, waited for as NATS_WAIT says; or why not, naming where."""
        access = self.settings.nats
        try:
            return await connect(access, self.name, wait=self.settings.nats_wait)
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            why = str(exc) or type(exc).__name__
            raise ConnectionError(f"NATS at {access.where()}: {why}") from exc

    async def stop(self) -> None:
        """Stops the gate (its leases settled, its usage events flushed), if it runs."""
        parts, self._running = self._running, None
        self.slot.gate = None
        if parts is not None:
            await parts.aclose()
