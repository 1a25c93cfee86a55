"""`aitbc-up`: what it would start, with what settings, and how it supervises children."""

from __future__ import annotations

import asyncio
import io
import socket
import sys
from pathlib import Path

import pytest

from aitbc_infra import stack as definition
from aitbc_infra.nats_server import free_port
from aitbc_infra.readiness import http_ok, port_open, run_to_end, until_ready
from aitbc_infra.runner import Config, ConfigError, preflight, services
from aitbc_infra.supervisor import Service, Supervisor
from tests.unit.waiting import until

PY = sys.executable


def config(tmp_path: Path, **env: str) -> Config:
    return Config.from_env({"DATA_DIR": str(tmp_path / ".data"), **env})


def test_defaults_are_the_embedded_system(tmp_path: Path) -> None:
    c = config(tmp_path).layout
    assert c.nats_url is None
    assert c.bus_url == "nats://127.0.0.1:4322"
    assert (c.api_host, c.api_port) == ("127.0.0.1", 8000)
    assert c.upstream_url == "http://127.0.0.1:8011"
    assert c.database_url == f"sqlite+aiosqlite:///{tmp_path}/.data/keys.db"
    assert c.usage_database_url == f"sqlite+aiosqlite:///{tmp_path}/.data/usage.db"


def test_everything_starts_in_dependency_order(tmp_path: Path) -> None:
    table = services(config(tmp_path))
    assert [s.name for s in table] == ["nats", "keys", "usage", "coordinator", "api"]
    nats = table[0]
    config_file = Path(nats.argv[nats.argv.index("-c") + 1])
    written = config_file.read_text()
    assert "listen: 127.0.0.1:4322" in written and "jetstream" in written
    assert str(tmp_path / ".data" / "nats") in written
    assert "accounts {" in written and "nkey: " in written  # it requires the roles' credentials
    assert all(s.ready is not None for s in table)


def test_each_service_presents_its_own_role(tmp_path: Path) -> None:
    creds = tmp_path / ".data" / "creds"
    env = {s.name: s.env for s in services(config(tmp_path))}
    assert env["keys"]["NATS_CREDS"] == str(creds / "keys.nk")
    assert env["keys"]["NATS_WRITER_CREDS"] == str(creds / "keys-writer.nk")
    assert env["usage"]["NATS_CREDS"] == str(creds / "usage.nk")
    assert env["api"]["NATS_CREDS"] == str(creds / "edge.nk")
    assert not any(name.startswith("NATS_") for name in env["coordinator"])  # not on the bus


def test_children_are_told_where_everything_is(tmp_path: Path) -> None:
    c = config(tmp_path, NATS_PORT="5000", API_PORT="9000", COORDINATOR_PORT="9011")
    env = {s.name: s.env for s in services(c)}["api"]
    assert env["NATS_URL"] == "nats://127.0.0.1:5000"
    assert env["API_PORT"] == "9000"
    assert env["UPSTREAM_URL"] == "http://127.0.0.1:9011"
    assert env["DATABASE_URL"] == c.layout.database_url
    assert env["DATA_DIR"] == str(tmp_path / ".data")


def test_an_existing_nats_is_used_instead_of_starting_one(tmp_path: Path) -> None:
    table = services(config(tmp_path, NATS_URL="nats://10.1.2.3:4222"))
    assert "nats" not in [s.name for s in table]
    on_the_bus = [s for s in table if s.name != "coordinator"]
    assert all(s.env["NATS_URL"] == "nats://10.1.2.3:4222" for s in on_the_bus)


def test_a_subset_can_be_started(tmp_path: Path) -> None:
    table = services(config(tmp_path, UP_SERVICES="nats, coordinator"))
    assert [s.name for s in table] == ["nats", "coordinator"]
    with pytest.raises(ConfigError, match="unknown services: web"):
        services(config(tmp_path, UP_SERVICES="web"))


def test_bad_numbers_are_reported_not_raised(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bad setting"):
        config(tmp_path, API_PORT="eighty")


def test_a_busy_port_stops_everything_before_it_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        c = config(tmp_path, COORDINATOR_PORT=str(port), UP_SERVICES="coordinator")
        with pytest.raises(ConfigError, match=f"port {port}.*COORDINATOR_PORT"):
            preflight(c, services(c))
        c = config(
            tmp_path, API_PORT=str(free_port()), API_METRICS_PORT=str(port), UP_SERVICES="api"
        )
        with pytest.raises(ConfigError, match=f"port {port}.*API_METRICS_PORT"):
            preflight(c, services(c))


def test_an_unreachable_nats_url_is_reported(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: nobody answers
        c = config(tmp_path, NATS_URL=f"nats://127.0.0.1:{port}", UP_SERVICES="coordinator")
        with pytest.raises(ConfigError, match="does not answer"):
            preflight(c, services(c))


def test_a_nats_url_list_answers_when_any_of_its_servers_does(tmp_path: Path) -> None:
    """A cluster's nodes, the first of them down: `just up` uses the others."""
    with socket.socket() as down, socket.socket() as up:
        down.bind(("127.0.0.1", 0))  # bound, not listening
        up.bind(("127.0.0.1", 0))
        up.listen()
        servers = [f"nats://127.0.0.1:{s.getsockname()[1]}" for s in (down, up)]
        c = config(tmp_path, NATS_URL=" , ".join(servers), UP_SERVICES="coordinator")
        preflight(c, services(c))
        c = config(tmp_path, NATS_URL=servers[0], UP_SERVICES="coordinator")
        with pytest.raises(ConfigError, match="does not answer"):
            preflight(c, services(c))


def test_replicas_reach_every_service_and_need_a_cluster(tmp_path: Path) -> None:
    cluster = config(tmp_path, NATS_URL="nats://10.1.2.3:4222,nats://10.1.2.4:4222")
    clustered = config(tmp_path, NATS_URL=cluster.layout.nats_url or "", NATS_REPLICAS="3")
    on_the_bus = [s for s in services(clustered) if s.name != "coordinator"]
    assert {s.env["NATS_REPLICAS"] for s in on_the_bus} == {"3"}
    assert {s.env["NATS_REPLICAS"] for s in services(cluster) if s.name == "keys"} == {"1"}
    alone = config(tmp_path, NATS_REPLICAS="3")  # `just up`'s own nats-server: one node
    with pytest.raises(ConfigError, match="NATS_REPLICAS=3 needs a cluster"):
        preflight(alone, services(alone))
    with pytest.raises(ConfigError, match="NATS_REPLICAS must be a number from 1 to 5"):
        config(tmp_path, NATS_REPLICAS="7")


# --- the supervisor, with small Python children ----------------------------------------------


def child(code: str) -> list[str]:
    return [PY, "-u", "-c", code]


async def ready_now() -> bool:
    return True


async def never_ready() -> bool:
    return False


async def test_output_is_prefixed_and_stop_ends_everything_with_0() -> None:
    out = io.StringIO()
    sup = Supervisor(
        [
            Service("one", child("import time; print('hello'); time.sleep(60)"), ready=ready_now),
            Service("second", child("import time; print('hi'); time.sleep(60)")),
        ],
        out=out,
        color=False,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    lines = ("everything is up", "one    | hello", "second | hi")  # and the children's first
    await until(lambda: all(line in out.getvalue() for line in lines), timeout=30, every=0.05)
    processes = [r.process for r in sup.running]
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    lines = out.getvalue().splitlines()
    assert "one    | hello" in lines
    assert "second | hi" in lines
    # stopped in reverse order of starting, and really gone
    assert lines.index("up     | stopping second") < lines.index("up     | stopping one")
    assert all(p.returncode is not None for p in processes)


async def test_a_child_that_dies_stops_the_rest_and_fails() -> None:
    out = io.StringIO()
    sup = Supervisor(
        [
            Service("steady", child("import time; time.sleep(60)")),
            Service("fragile", child("import time; time.sleep(0.5); raise SystemExit(3)")),
        ],
        out=out,
        color=False,
    )
    assert await asyncio.wait_for(sup.run(asyncio.Event()), 15) == 1
    assert "fragile exited unexpectedly with code 3: stopping everything" in out.getvalue()
    assert "stopping steady" in out.getvalue()


async def test_a_child_that_never_gets_ready_times_out() -> None:
    out = io.StringIO()
    sup = Supervisor(
        [Service("slow", child("import time; time.sleep(60)"), ready=never_ready)],
        out=out,
        ready_timeout=0.5,
        color=False,
    )
    assert await asyncio.wait_for(sup.run(asyncio.Event()), 15) == 1
    assert "slow was not ready within 0.5 s" in out.getvalue()


async def test_a_child_that_exits_while_starting_is_reported() -> None:
    out = io.StringIO()
    sup = Supervisor([Service("broken", child("raise SystemExit(2)"), ready=never_ready)], out=out)
    assert await asyncio.wait_for(sup.run(asyncio.Event()), 15) == 1
    assert "broken exited (code 2) before it was ready" in out.getvalue()


async def test_a_child_that_ignores_sigterm_is_killed() -> None:
    out = io.StringIO()
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ok'); time.sleep(60)"
    )
    sup = Supervisor([Service("stubborn", child(stubborn))], out=out, stop_timeout=0.5, color=False)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    while "stubborn | ok" not in out.getvalue():
        await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    assert "stubborn did not stop in 0.5 s: killing it" in out.getvalue()


async def test_neighbours_of_one_group_are_stopped_together(tmp_path: Path) -> None:
    """Each of these stops only once the other has been told to, as each node of a cluster
    stopped alone would call out for the others: one after the other, the first would be
    killed at the stop timeout."""
    term = (
        "import os, signal, sys, time\n"
        "mine, theirs = sys.argv[1:3]\n"
        "def stop(*_):\n"
        "    open(mine, 'w').close()\n"
        "    while not os.path.exists(theirs):\n"
        "        time.sleep(0.01)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ok')\n"
        "while True:\n"
        "    time.sleep(1)\n"
    )
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    pair = [
        Service("a", [*child(term), a, b], group="pair"),
        Service("b", [*child(term), b, a], group="pair"),
    ]
    out = io.StringIO()
    sup = Supervisor(pair, out=out, stop_timeout=10, color=False)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    ready = ("everything is up", "a  | ok", "b  | ok")  # their SIGTERM handlers are set
    await until(lambda: all(line in out.getvalue() for line in ready), timeout=30, every=0.05)
    processes = [r.process for r in sup.running]
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0
    assert "did not stop" not in out.getvalue()
    assert [p.returncode for p in processes] == [0, 0]


# --- the one readiness probe, and the one stack definition -----------------------------------


async def _http_server(status: bytes) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


async def test_http_health_is_ready_on_200_only() -> None:
    ok, unavailable = await _http_server(b"200 OK"), await _http_server(b"503 Unavailable")
    async with ok, unavailable:
        ok_port = ok.sockets[0].getsockname()[1]
        down_port = unavailable.sockets[0].getsockname()[1]
        assert await http_ok(f"http://127.0.0.1:{ok_port}/v1/health")()
        assert not await http_ok(f"http://127.0.0.1:{down_port}/v1/health")()
        assert await port_open("127.0.0.1", down_port)()
    assert not await http_ok(f"http://127.0.0.1:{ok_port}/v1/health")()  # closed now
    assert not await port_open("127.0.0.1", ok_port)()


async def test_waiting_ends_when_the_caller_gives_up_or_time_is_out() -> None:
    assert await until_ready(ready_now, within=1.0)
    assert not await until_ready(never_ready, within=0.2)
    assert not await until_ready(ready_now, within=10.0, given_up=lambda: True)


async def test_a_probe_can_be_waited_for_from_inside_a_running_loop() -> None:
    assert run_to_end(until_ready(ready_now, within=1.0))


def test_the_definition_runs_on_free_ports_in_a_folder_of_its_own(tmp_path: Path) -> None:
    layout = definition.Layout.on_free_ports(tmp_path, env={"LOG_LEVEL": "DEBUG"})
    table = {s.name: s for s in definition.services(layout)}
    assert list(table) == ["nats", "keys", "usage", "coordinator", "api"]
    ports = (layout.nats_port, layout.api_port, layout.api_metrics_port, layout.coordinator_port)
    assert len(set(ports)) == 4
    assert table["api"].port == layout.api_port
    assert table["keys"].env["DATABASE_URL"] == f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    assert all(s.env.get("LOG_LEVEL") == "DEBUG" for s in table.values() if s.name != "nats")
    extra = definition.edge(layout, "second", 9999, AUTH_FAILURE_BUDGET="3")
    assert extra.env["API_PORT"] == "9999" and extra.env["AUTH_FAILURE_BUDGET"] == "3"
    assert extra.env["UPSTREAM_URL"] == layout.upstream_url
    assert extra.env["API_METRICS_PORT"] == "0"  # an added edge has no metrics port unless told


def test_up_gives_the_edge_a_metrics_port_and_says_where(tmp_path: Path) -> None:
    api = {s.name: s for s in services(config(tmp_path))}["api"]
    assert api.env["API_METRICS_PORT"] == "8001"
    assert api.address.endswith("(metrics, this machine only: http://127.0.0.1:8001/metrics)")
    moved = {s.name: s for s in services(config(tmp_path, API_METRICS_PORT="9100"))}["api"]
    assert moved.env["API_METRICS_PORT"] == "9100"
    off = {s.name: s for s in services(config(tmp_path, API_METRICS_PORT="0"))}["api"]
    assert off.address == "http://127.0.0.1:8000"


def test_a_database_url_is_taken_as_given(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:5432/some_db"
    layout = definition.Layout.on_free_ports(tmp_path, database_url=url)
    assert definition.service(layout, "keys").env["DATABASE_URL"] == url
    assert layout.usage_database_url == f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}"


async def test_an_edge_without_plain_health_is_ready_once_its_port_is_open(
    tmp_path: Path,
) -> None:
    """On a port that answers 503: the plain edge in front of its Coordinator is not ready;
    one in front of another upstream, or on HTTPS only, is (its port is open)."""
    layout = definition.Layout.on_free_ports(tmp_path)
    async with await _http_server(b"503 Unavailable") as server:
        port = server.sockets[0].getsockname()[1]
        plain = definition.edge(layout, "plain", port).ready
        assert plain is not None and not await plain()
        for settings in (
            {"UPSTREAM_URL": "http://127.0.0.1:1"},
            {"TLS_CERT_FILE": "/tmp/cert.pem"},
            {"REQUIRE_HTTPS": "1"},
        ):
            other = definition.edge(layout, "other", port, **settings).ready
            assert other is not None and await other(), settings
