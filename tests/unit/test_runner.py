"""`aitbc-up`: what it would start, with what settings, and how it supervises children."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from aitbc_infra import stack as definition
from aitbc_infra.nats_server import free_port
from aitbc_infra.readiness import http_ok, port_open
from aitbc_infra.runner import Config, ConfigError, preflight, services


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
        c = config(tmp_path, USAGE_METRICS_PORT=str(port), UP_SERVICES="usage")
        with pytest.raises(ConfigError, match=f"port {port}.*USAGE_METRICS_PORT"):
            preflight(c, services(c))


def test_an_unreachable_nats_url_is_reported(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: nobody answers
        c = config(tmp_path, NATS_URL=f"nats://127.0.0.1:{port}", UP_SERVICES="coordinator")
        with pytest.raises(ConfigError, match="does not answer"):
            preflight(c, services(c))


@pytest.mark.parametrize("userinfo", ["op:s3cret", "s3cret"])  # a password, a token
def test_an_unreachable_nats_url_is_reported_without_its_secret(
    tmp_path: Path, userinfo: str
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: nobody answers
        url = f"nats://{userinfo}@127.0.0.1:{s.getsockname()[1]}"
        c = config(tmp_path, NATS_URL=url, UP_SERVICES="coordinator")
        with pytest.raises(ConfigError, match=r"NATS_URL=nats://(op:)?\*\*\*@") as refused:
            preflight(c, services(c))
    assert "s3cret" not in str(refused.value)


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


# --- the one HTTP readiness probe, and the one stack definition -----------------------------------


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


def test_the_definition_runs_on_free_ports_in_a_folder_of_its_own(tmp_path: Path) -> None:
    layout = definition.Layout.on_free_ports(tmp_path, env={"LOG_LEVEL": "DEBUG"})
    table = {s.name: s for s in definition.services(layout)}
    assert list(table) == ["nats", "keys", "usage", "coordinator", "api"]
    ports = (
        *(layout.nats_port, layout.api_port, layout.api_metrics_port, layout.coordinator_port),
        *(layout.keys_metrics_port, layout.usage_metrics_port),
    )
    assert len(set(ports)) == 6
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


def test_up_gives_the_keys_and_usage_services_metrics_ports_and_says_where(
    tmp_path: Path,
) -> None:
    table = {s.name: s for s in services(config(tmp_path))}
    for name, setting, port in (("keys", "KEYS", 8002), ("usage", "USAGE", 8003)):
        assert table[name].env[f"{setting}_METRICS_PORT"] == str(port)
        assert "API_METRICS_PORT" not in table[name].env  # each is told its own port only
        metrics = f"http://127.0.0.1:{port}/metrics"
        assert table[name].address == f"NATS only (metrics, this machine only: {metrics})"
        assert definition.metrics_url(table[name].env, name) == metrics
    moved = {s.name: s for s in services(config(tmp_path, KEYS_METRICS_PORT="9102"))}["keys"]
    assert definition.metrics_url(moved.env, "keys") == "http://127.0.0.1:9102/metrics"
    off = {s.name: s for s in services(config(tmp_path, USAGE_METRICS_PORT="0"))}["usage"]
    assert off.address == "NATS only"
    another = definition.another(table["keys"], "keys-2", 0)  # two cannot share a port
    assert (another.name, another.env["KEYS_METRICS_PORT"]) == ("keys-2", "0")
    assert another.env["DATABASE_URL"] == table["keys"].env["DATABASE_URL"]


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
