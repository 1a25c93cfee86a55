"""GateMiddleware in front of Litestar, Starlette and FastAPI apps, on a real nats-server as the
edge's role: started by the app's lifespan (or by the first request when a server sends none),
stopped after the app's shutdown; public paths, requests admitted upstream, WebSockets.

What a gated request is answered with a real key (headers, 429s, usage events, revocations) is
the contract suite's, against every kind of gated app (tests/e2e/test_gate_contract.py)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from litestar import Litestar, get
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from aitbc_gate import GateMiddleware, GateSettings
from aitbc_gate.types import Scope
from aitbc_infra.nats_server import NatsServer


@pytest.fixture
def settings(nats_server: NatsServer) -> GateSettings:
    return GateSettings(nats=nats_server.access("edge"), public_routes=("/v1/health", "/docs*"))


async def _ok(request: object) -> JSONResponse:
    return JSONResponse({"ok": True})


async def _seen(request: Request) -> JSONResponse:
    """What the app is given of the request: its query and its headers."""
    return JSONResponse({"query": request.url.query, "headers": dict(request.headers)})


async def _echo(socket: WebSocket) -> None:
    await socket.accept()
    await socket.send_text("hello")
    await socket.close()


async def _query(socket: WebSocket) -> None:
    """What the app is given of a WebSocket handshake's query."""
    await socket.accept()
    await socket.send_text(socket.url.query)
    await socket.close()


def starlette_app() -> Starlette:
    paths = ["/v1/health", "/v1/jobs", "/docs/page"]
    routes = [
        Route("/v1/seen", _seen),
        WebSocketRoute("/v1/stream", _echo),
        WebSocketRoute("/docs/stream", _query),
    ]
    return Starlette(routes=[*(Route(p, _ok) for p in paths), *routes])


def refusal(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


def test_the_lifespan_starts_and_stops_the_gate(settings: GateSettings) -> None:
    gated = GateMiddleware(starlette_app(), settings)
    assert gated.slot.gate is None
    with TestClient(gated) as client:
        assert gated.slot.gate is not None
        health = client.get("/v1/health")
        assert health.status_code == 200 and health.headers["x-request-id"]
        assert refusal(client.get("/v1/jobs")) == (401, "MISSING_API_KEY")
        assert client.get("/docs/page").status_code == 200  # under a public prefix, "/docs*"
        assert refusal(client.get("/doc")) == (401, "MISSING_API_KEY")
    assert gated.slot.gate is None


def test_a_litestar_app_is_gated_whole(settings: GateSettings) -> None:
    @get("/v1/jobs", sync_to_thread=False)
    def jobs() -> dict[str, bool]:
        return {"ok": True}

    gated = GateMiddleware(Litestar([jobs]), settings)
    with TestClient(gated) as client:
        assert refusal(client.get("/v1/jobs")) == (401, "MISSING_API_KEY")
        invalid = client.get("/v1/jobs", headers={"X-API-Key": "aitbc_sk_not_a_key"})
        assert refusal(invalid) == (401, "INVALID_API_KEY")
        # A path no route has: refused before the app routes it, as every gated path is.
        assert refusal(client.get("/v1/nowhere")) == (401, "MISSING_API_KEY")


def test_a_fastapi_app_adds_the_gate_as_middleware(settings: GateSettings) -> None:
    app = FastAPI()

    @app.get("/v1/jobs")
    def jobs() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(GateMiddleware, settings=settings)
    with TestClient(app) as client:
        assert refusal(client.get("/v1/jobs")) == (401, "MISSING_API_KEY")
        both = client.get("/v1/jobs?api_key=a", headers={"X-API-Key": "b"})
        assert refusal(both) == (400, "CONFLICTING_API_KEYS")


def test_a_request_admitted_upstream_passes_without_a_key(settings: GateSettings) -> None:
    def admitted(scope: Scope) -> bool:
        return any(name == b"x-admitted" for name, _ in scope["headers"])

    gated = GateMiddleware(starlette_app(), settings, admitted=admitted)
    with TestClient(gated) as client:
        assert client.get("/v1/jobs", headers={"X-Admitted": "1"}).status_code == 200
        assert refusal(client.get("/v1/jobs")) == (401, "MISSING_API_KEY")
        # The key is a secret the app is not given: not in the query, not in the headers
        headers = {"X-Admitted": "1", "X-API-Key": "aitbc_secret"}
        seen = client.get("/v1/seen?page=2&api_key=aitbc_secret", headers=headers).json()
        assert seen["query"] == "page=2" and "x-api-key" not in seen["headers"]


async def test_without_lifespan_events_the_first_request_starts_it(
    settings: GateSettings,
) -> None:
    gated = GateMiddleware(starlette_app(), settings)
    transport = httpx.ASGITransport(app=gated)  # sends no lifespan events
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert refusal(await client.get("/v1/jobs")) == (401, "MISSING_API_KEY")
            assert gated.slot.gate is not None
    finally:
        await gated.stop()
    assert gated.slot.gate is None


def test_a_websocket_needs_a_key_too(settings: GateSettings) -> None:
    gated = GateMiddleware(starlette_app(), settings)
    with TestClient(gated) as client:
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/v1/stream"):
            pass
        assert closed.value.code == 1008


def test_an_app_under_a_root_path_is_gated_by_its_own_routes(settings: GateSettings) -> None:
    """Behind a proxy that strips a prefix (uvicorn --root-path /api), the server puts the
    prefix in the scope's path as well as in its root_path: PUBLIC_ROUTES name the app's
    routes, as the app declares them, without it."""
    gated = GateMiddleware(starlette_app(), settings)
    with TestClient(gated, root_path="/api") as client:
        assert client.get("/api/v1/health").status_code == 200
        assert client.get("/api/docs/page").status_code == 200
        assert refusal(client.get("/api/v1/jobs")) == (401, "MISSING_API_KEY")
        assert refusal(client.get("/api/v1/health/x")) == (401, "MISSING_API_KEY")


def test_a_public_websocket_is_not_given_the_key_either(settings: GateSettings) -> None:
    """Its server logs the handshake's query, as it logs a request's."""
    gated = GateMiddleware(starlette_app(), settings)
    query = "x=1&api_key=aitbc_secret"
    with TestClient(gated) as client, client.websocket_connect(f"/docs/stream?{query}") as socket:
        assert socket.receive_text() == "x=1"


def test_cors_added_after_the_gate_answers_preflights(settings: GateSettings) -> None:
    """As the README says: a preflight carries no key, so CORS goes outside the gate."""
    app = FastAPI()

    @app.get("/v1/jobs")
    def jobs() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(GateMiddleware, settings=settings)
    app.add_middleware(CORSMiddleware, allow_origins=["https://app.example"])
    origin = {"Origin": "https://app.example"}
    with TestClient(app) as client:
        preflight = {**origin, "Access-Control-Request-Method": "GET"}
        answer = client.options("/v1/jobs", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        refused = client.get("/v1/jobs", headers=origin)
        assert refusal(refused) == (401, "MISSING_API_KEY")
        assert refused.headers["access-control-allow-origin"] == "https://app.example"
