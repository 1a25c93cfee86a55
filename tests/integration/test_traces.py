"""One request, one trace: the edge, the keys service and the usage service in this process on a
real nats-server (each with its own role), the Coordinator a recording upstream, one in-memory
exporter seeing every span. The context crosses NATS in message headers and HTTP in the
forwarded request's `traceparent`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
import uvicorn
from aiohttp import web
from nats.aio.msg import Msg

from aitbc_api.app import create_app
from aitbc_api.settings import Settings as EdgeSettings
from aitbc_contracts.subjects import KEYS_CHECK, KEYS_OWNER_COMMANDS
from aitbc_infra.nats_server import NatsServer, free_port
from aitbc_keys.main import running_service as running_keys
from aitbc_runtime import tracing
from aitbc_usage.main import running_service as running_usage
from aitbc_usage.settings import Settings as UsageSettings
from tests.bus import keys_settings
from tests.traces import is_child, recording, traceparent
from tests.unit.waiting import until

CLIENT_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass
class System:
    edge: httpx.AsyncClient
    upstream: list[list[str]]  # each forwarded request's traceparent headers
    bus: list[Msg]  # copies of the edge's messages to the keys and usage services


async def recording_upstream(port: int, seen: list[list[str]]) -> web.AppRunner:
    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.getall("traceparent", []))
        return web.json_response({"jobs": []})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@asynccontextmanager
async def serving_edge(settings: EdgeSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The edge app under uvicorn, on this event loop: its lifespan, middleware and routes."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    await until(lambda: server.started or serving.done(), timeout=30, every=0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}") as client:
            yield client
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def system(own_nats: NatsServer, tmp_path: Path) -> AsyncIterator[System]:
    upstream_port = free_port()
    seen: list[list[str]] = []
    bus: list[Msg] = []
    async with AsyncExitStack() as stack:
        keys = keys_settings(own_nats, database_url=f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
        await stack.enter_async_context(running_keys(keys))
        usage_db = f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}"
        usage = UsageSettings(nats=own_nats.access("usage"), database_url=usage_db)
        await stack.enter_async_context(running_usage(usage))
        stack.push_async_callback((await recording_upstream(upstream_port, seen)).cleanup)

        async def copy(msg: Msg) -> None:
            bus.append(msg)

        # What each service receives from the edge's account, seen as a second subscriber of
        # the service's own role
        for role, subjects in (
            ("keys", (KEYS_CHECK, KEYS_OWNER_COMMANDS)),
            ("usage", ("aitbc.usage.decide.*",)),
        ):
            spy = await nats.connect(**own_nats.options(role))
            stack.push_async_callback(spy.close)
            for subject in subjects:
                await spy.subscribe(subject, cb=copy)
            await spy.flush()
        settings = EdgeSettings(
            nats=own_nats.access("edge"),
            port=free_port(),
            upstream_url=f"http://127.0.0.1:{upstream_port}",
        )
        edge = await stack.enter_async_context(serving_edge(settings))
        yield System(edge, seen, bus)


async def sign_up_and_call(edge: httpx.AsyncClient) -> None:
    """A sign-up (an owner command), then the new master key's first call (a cache miss: the
    keys service checks it; a decision by the usage service; forwarded to the Coordinator)."""
    signed_up = await edge.post("/v1/accounts", json={"name": "traced"})
    assert signed_up.status_code == 201, signed_up.text
    key = signed_up.json()["master_key"]["key"]
    headers = {"X-API-Key": key, "traceparent": CLIENT_TRACEPARENT}
    called = await edge.get("/v1/jobs", headers=headers)
    assert called.status_code == 200, called.text


def headers_sent(bus: list[Msg], subject: str) -> list[str | None]:
    return [
        (msg.headers or {}).get("traceparent") for msg in bus if msg.subject.startswith(subject)
    ]


async def test_a_request_is_one_trace_across_the_edge_keys_and_usage(system: System) -> None:
    with recording() as traces:
        await sign_up_and_call(system.edge)
        await until(lambda: len(traces.named("process aitbc.keys.check")) == 1, timeout=10)
        await until(lambda: traces.starting("process aitbc.usage.decide."), timeout=10)

    # The sign-up: the owner command's span in the keys service is the request's child.
    sign_up = traces.one("POST /v1/accounts")
    command = traces.one(f"process {KEYS_OWNER_COMMANDS}")
    assert is_child(command, sign_up)
    assert command.attributes is not None and command.attributes["aitbc.command"] == "CreateAccount"

    # The call: request -> key check batch -> the keys service's check (a cache miss).
    call = traces.one("GET /v1/{path}")
    batch, check = traces.one("key_checks batch"), traces.one("process aitbc.keys.check")
    assert is_child(batch, call) and is_child(check, batch)
    assert headers_sent(system.bus, KEYS_CHECK) == [traceparent(batch)]
    # request -> decision batch -> the usage service's decision
    decisions = traces.one("decisions batch")
    (decided,) = traces.starting("process aitbc.usage.decide.")
    assert is_child(decisions, call) and is_child(decided, decisions)
    assert traceparent(decisions) in headers_sent(system.bus, "aitbc.usage.decide.")
    # -> the Coordinator: the request's own context, once; the client's was only linked.
    assert system.upstream[-1] == [traceparent(call)]
    assert call.parent is None and [link.context.trace_id for link in call.links] == [
        int(CLIENT_TRACEPARENT.split("-")[1], 16)
    ]


async def test_with_tracing_off_nothing_is_traced_or_propagated(system: System) -> None:
    with recording() as traces:
        tracing.enabled = False  # a tracer that records, behind a flag that is off
        await sign_up_and_call(system.edge)
        await until(lambda: headers_sent(system.bus, "aitbc.usage.decide."), timeout=10)
        assert traces.spans() == []
    assert headers_sent(system.bus, KEYS_CHECK) == [None]
    assert set(headers_sent(system.bus, "aitbc.usage.decide.")) == {None}
    assert headers_sent(system.bus, KEYS_OWNER_COMMANDS) == [None]
    assert system.upstream == [[]]  # the client's traceparent is not passed on either
