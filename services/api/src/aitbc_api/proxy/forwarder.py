"""The forwarded routes in front of the framework: a request that the router would send to the
forwarded route (aitbc_api.proxy.forward.forwarded_route) is forwarded from here, past the
router's dispatch, the framework's request and response objects and its exception middleware,
which cost the proxy hop about a sixth of its CPU per request (bench/results/ANALYSIS.md);
every other request goes on to the framework.

Which requests those are is the router's own answer (its cached routing of the path and method),
asked once per path and method: the edge's routes and the forwarded ones are told apart
exactly as the router tells them apart (an unknown method on a forwarded path, a path under an
edge route that names none: the framework answers them, 405 and 404, as before).

Inside the request layer (aitbc_gate.requests), like the framework's routes: the same context,
request id, rate-limit headers and usage event. A refusal is answered with the error body, as
the framework's handlers answer one (aitbc_gate.requests.answer)."""

from __future__ import annotations

import logging

from litestar import Litestar
from litestar.utils import normalize_path

from aitbc_api.proxy.forward import FORWARDING, forward, forwarded_route
from aitbc_contracts.messages import Code
from aitbc_gate.errors import ApiError
from aitbc_gate.requests import answer
from aitbc_gate.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("aitbc.api")

_UNEXPECTED = ApiError(500, Code.INTERNAL_ERROR, "An unexpected error occurred")


class Forwarder:
    """`app`: the framework's ASGI handler, for every request that is not forwarded; `edge`:
    the app whose router decides, and whose state holds what forwarding needs (its lifespan
    puts it there)."""

    KEPT = 4096  # (method, path) decisions remembered; paths hold ids, so they start over

    def __init__(self, app: ASGIApp, edge: Litestar) -> None:
        self.app = app
        self.edge = edge
        self._forwarded: dict[tuple[str, str], str | None] = {}  # -> the route's template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        template = self._template(scope) if scope["type"] == "http" else None
        if template is None:
            await self.app(scope, receive, send)
            return
        scope["path_template"] = template  # the route's name, for the request metric and span
        try:
            relay = await forward(scope, receive, self.edge.state[FORWARDING])
        except ApiError as error:
            await answer(send, error)
            return
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"][:256])
            await answer(send, _UNEXPECTED)
            return
        await relay(scope, receive, send)

    def _template(self, scope: Scope) -> str | None:
        """The forwarded route's template if the router sends this request there, else None."""
        key = (scope["method"], scope["path"])
        known = self._forwarded.get(key, "")
        if known == "":
            known = self._forwarded[key] = self._route(*key)
            if len(self._forwarded) > self.KEPT:
                self._forwarded.clear()
        return known

    def _route(self, method: str, path: str) -> str | None:
        try:
            routed = self.edge.asgi_router.handle_routing(path=normalize_path(path), method=method)
        except Exception:  # no route, or not this method: the framework answers (404, 405)
            return None
        _, handler, _, _, template = routed
        return template if handler.fn is forwarded_route.fn else None
