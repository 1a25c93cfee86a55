"""A gated app whose gate cannot start, served as the README says (uvicorn, its defaults): the
server says why in a line and does not start, rather than serve the app without the gate's
lifespan and without the app's own. A real uvicorn server in process, a real nats-server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aitbc_contracts.keyformat import generate_key
from aitbc_gate import GateMiddleware, GateSettings
from aitbc_infra.nats_server import NatsServer, free_port
from aitbc_runtime.bus_access import BusAccess


def fastapi_app(ran: list[str], settings: GateSettings | None = None) -> FastAPI:
    """A FastAPI app with a lifespan of its own, gated as the README says."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ran.append("startup")
        yield
        ran.append("shutdown")

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(GateMiddleware, settings=settings)
    return app


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def serve(app: FastAPI) -> uvicorn.Server:
    """`app` served by uvicorn with its default lifespan detection until its startup ends:
    failed, the server stops by itself; done, it is stopped."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None)
    server = uvicorn.Server(config)

    async def stop_once_started() -> None:
        while not server.started:
            await asyncio.sleep(0.05)
        server.should_exit = True

    stopping = asyncio.create_task(stop_once_started())
    try:
        async with asyncio.timeout(30):
            await server.serve()
    except SystemExit:  # how uvicorn ends a failed startup (raised out of a task, it would
        pass  # end the event loop)
    finally:
        stopping.cancel()
    return server


async def test_a_bus_out_of_reach_fails_the_startup(caplog: pytest.LogCaptureFixture) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"
    ran: list[str] = []
    app = fastapi_app(ran, GateSettings(nats=BusAccess(url=nowhere), nats_wait=0.5))
    with caplog.at_level(logging.INFO):
        server = await serve(app)
    assert not server.started and ran == []
    assert "appears unsupported" not in caplog.text
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("API key gate could not start" in m and nowhere in m for m in failed), failed


async def test_settings_that_do_not_read_fail_the_startup_naming_the_variable(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NATS_URL", nats_server.url)
    for variable, value in (("AUTH_CACHE_SIZE", "lots"), ("SCOPE_RULES", "jobs=read")):
        monkeypatch.setenv(variable, value)
        ran: list[str] = []
        caplog.clear()
        with caplog.at_level(logging.INFO):
            server = await serve(fastapi_app(ran))  # settings from the environment
        monkeypatch.delenv(variable)
        assert not server.started and ran == []
        assert "Traceback" not in caplog.text and "appears unsupported" not in caplog.text
        failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any(variable in m for m in failed), failed


async def test_a_gate_that_is_not_running_keeps_the_key_out_of_the_access_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that sends no lifespan events: the first request starts the gate, and while
    NATS is out of reach each is answered 503; the server logs the query the scope holds."""
    # Servers and logging set-ups run earlier in this process (the edge's, without an access
    # log) may leave uvicorn's access logger quiet, which a later server's settings do not undo
    access = logging.getLogger("uvicorn.access")
    monkeypatch.setattr(access, "propagate", True)
    monkeypatch.setattr(access, "disabled", False)
    monkeypatch.setattr(access, "level", logging.INFO)
    secret = generate_key()
    settings = GateSettings(nats=BusAccess(url=f"nats://127.0.0.1:{free_port()}"), nats_wait=0.2)
    gated = GateMiddleware(Starlette(routes=[Route("/v1/jobs", ok)]), settings)
    port = free_port()
    config = uvicorn.Config(gated, port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:
                await asyncio.sleep(0.05)
        with caplog.at_level(logging.INFO):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                answer = await client.get(f"/v1/jobs?page=2&api_key={secret}")
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        served = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
        logged = "\n".join(served)  # the server's lines and the gate's (the client logs its URL)
        assert "GET /v1/jobs?page=2 HTTP" in logged and secret not in logged
    finally:
        server.should_exit = True
        await serving


async def test_requests_while_the_gate_cannot_start_wait_for_one_attempt_only() -> None:
    """No lifespan events: the first requests start the gate. NATS out of reach, they wait
    for that one attempt (NATS_WAIT), not each for one of its own in turn."""
    settings = GateSettings(nats=BusAccess(url=f"nats://127.0.0.1:{free_port()}"), nats_wait=2.0)
    gated = GateMiddleware(Starlette(routes=[Route("/v1/jobs", ok)]), settings)
    transport = httpx.ASGITransport(app=gated)  # sends no lifespan events
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        started = time.monotonic()
        answers = await asyncio.gather(*(client.get("/v1/jobs") for _ in range(5)))
        took = time.monotonic() - started
    assert [a.status_code for a in answers] == [503] * 5
    assert took < 6, f"{took:.1f}s: each request waited for an attempt of its own"
