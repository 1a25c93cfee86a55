"""`aitbc-cluster`: what it would start on a 3-node cluster, with what settings (no process
is started here; tests/integration/test_cluster_up.py runs it)."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from aitbc_infra.cluster import Cluster, main, preflight, services, shown, topology
from aitbc_infra.layout import ConfigError
from aitbc_infra.nats_server import free_port

NODE_URLS = "nats://127.0.0.1:4322,nats://127.0.0.1:4323,nats://127.0.0.1:4324"


def free_ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]


def cluster(tmp_path: Path, **env: str) -> Cluster:
    return Cluster.from_env({"DATA_DIR": str(tmp_path / ".data"), **env})


def test_everything_twice_on_three_nodes_in_start_order(tmp_path: Path) -> None:
    table = services(cluster(tmp_path))
    assert [s.name for s in table] == [
        *("nats-1", "nats-2", "nats-3"),
        *("keys-1", "keys-2", "usage-1", "usage-2"),
        *("coordinator", "api-1", "api-2"),
    ]
    assert {s.group for s in table if s.name.startswith("nats-")} == {"nats"}  # stop together
    assert all(s.ready is not None for s in table)


def test_every_process_on_the_bus_is_told_every_node_and_three_replicas(tmp_path: Path) -> None:
    table = services(cluster(tmp_path, NATS_URL="nats://10.0.0.1:4222", NATS_REPLICAS="1"))
    on_the_bus = [s for s in table if not s.name.startswith(("nats-", "coordinator"))]
    assert {s.env["NATS_URL"] for s in on_the_bus} == {NODE_URLS}
    assert {s.env["NATS_REPLICAS"] for s in on_the_bus} == {"3"}
    assert all("USAGE_PARTITIONS" not in s.env for s in table)  # the usage service's to settle
    creds = tmp_path / ".data" / "cluster" / "creds"
    assert {s.env["NATS_CREDS"] for s in on_the_bus if s.name.startswith("keys")} == {
        str(creds / "keys.nk")
    }


def test_each_service_shares_one_database_between_its_two_processes(tmp_path: Path) -> None:
    data = tmp_path / ".data" / "cluster"  # apart from `just up`'s .data
    env = {s.name: s.env for s in services(cluster(tmp_path))}
    assert env["keys-1"]["DATABASE_URL"] == env["keys-2"]["DATABASE_URL"]
    assert env["keys-1"]["DATABASE_URL"] == f"sqlite+aiosqlite:///{data / 'keys.db'}"
    assert env["usage-2"]["USAGE_DATABASE_URL"] == f"sqlite+aiosqlite:///{data / 'usage.db'}"
    assert env["api-1"]["DATA_DIR"] == str(data)
    given = "postgresql+asyncpg://aitbc:s3cret@db.internal/keys"
    env = {s.name: s.env for s in services(cluster(tmp_path, DATABASE_URL=given))}
    assert env["keys-1"]["DATABASE_URL"] == env["keys-2"]["DATABASE_URL"] == given


def test_the_edges_and_their_metrics_listen_on_ports_of_their_own(tmp_path: Path) -> None:
    table = {s.name: s for s in services(cluster(tmp_path))}
    assert (table["api-1"].port, table["api-1"].env["API_METRICS_PORT"]) == (8000, "8100")
    assert (table["api-2"].port, table["api-2"].env["API_METRICS_PORT"]) == (8001, "8101")
    assert table["api-2"].env["UPSTREAM_URL"] == "http://127.0.0.1:8011"
    chosen = cluster(tmp_path, CLUSTER_API_PORTS="9000,9001", CLUSTER_API_METRICS_PORTS="9100,9101")
    table = {s.name: s for s in services(chosen)}
    assert (table["api-2"].port, table["api-2"].env["API_METRICS_PORT"]) == (9001, "9101")


def test_each_keys_and_usage_process_has_its_metrics_on_a_port_of_its_own(tmp_path: Path) -> None:
    table = {s.name: s for s in services(cluster(tmp_path))}
    told = {
        name: table[name].env[f"{name.split('-')[0].upper()}_METRICS_PORT"]
        for name in ("keys-1", "keys-2", "usage-1", "usage-2")
    }
    assert told == {"keys-1": "8102", "keys-2": "8103", "usage-1": "8104", "usage-2": "8105"}
    chosen = cluster(tmp_path, CLUSTER_USAGE_METRICS_PORTS="9104,9105")
    table = {s.name: s for s in services(chosen)}
    assert table["usage-2"].env["USAGE_METRICS_PORT"] == "9105"
    said = topology(chosen, list(table.values()))
    assert "(metrics, this machine only: http://127.0.0.1:9105/metrics)" in said
    assert "(metrics, this machine only: http://127.0.0.1:8103/metrics)" in said


def test_each_node_routes_to_the_ones_before_it_and_is_written_privately(tmp_path: Path) -> None:
    services(cluster(tmp_path))
    data = tmp_path / ".data" / "cluster"
    configs = [(data / f"nats-{n}.conf") for n in (1, 2, 3)]
    routes = [line for c in configs for line in c.read_text().splitlines() if "routes:" in line]
    assert routes == [
        "  routes: [nats-route://127.0.0.1:6322]",
        "  routes: [nats-route://127.0.0.1:6322]",
        "  routes: [nats-route://127.0.0.1:6322, nats-route://127.0.0.1:6323]",
    ]
    for n, config in enumerate(configs, start=1):
        text = config.read_text()
        assert f"listen: 127.0.0.1:432{n + 1}" in text and "jetstream" in text
        assert "accounts {" in text and "nkey: " in text  # the roles' credentials, as `just up`
    private = [*configs, *(data / "creds").glob("*.nk")]
    assert {stat.S_IMODE(path.stat().st_mode) for path in private} == {0o600}


def test_tls_reaches_the_nodes_their_routes_and_every_client(tmp_path: Path) -> None:
    table = {s.name: s for s in services(cluster(tmp_path, NATS_TLS_VERIFY="1"))}
    text = (tmp_path / ".data" / "cluster" / "nats-1.conf").read_text()
    assert "handshake_first: true" in text and text.count("verify: true") == 2  # clients, routes
    assert table["keys-2"].env["NATS_URL"] == NODE_URLS.replace("nats://", "tls://")
    assert table["usage-1"].env["NATS_TLS_CERT"].endswith("usage.pem")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("CLUSTER_NATS_PORTS", "4322,4323"),
        ("CLUSTER_ROUTE_PORTS", "a,b,c"),
        ("CLUSTER_API_PORTS", "8000,70000"),
    ],
)
def test_bad_port_lists_are_refused(tmp_path: Path, setting: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"{setting} must be"):
        cluster(tmp_path, **{setting: value})


def test_a_port_given_twice_or_taken_is_refused_before_anything_starts(tmp_path: Path) -> None:
    twice = cluster(tmp_path, CLUSTER_API_METRICS_PORTS="8100,8011")
    with pytest.raises(ConfigError, match="port 8011 is given to api-2 and to coordinator"):
        preflight(twice)
    twice = cluster(tmp_path, CLUSTER_KEYS_METRICS_PORTS="8102,8104")
    with pytest.raises(ConfigError, match="port 8104 is given to keys-2 and to usage-1"):
        preflight(twice)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = cluster(tmp_path, CLUSTER_NATS_PORTS=f"{port},40001,40002")
        with pytest.raises(ConfigError, match=f"port {port}.*nats-1.*CLUSTER_NATS_PORTS"):
            preflight(taken)
    assert not (tmp_path / ".data").exists()  # nothing made


def test_the_topology_names_every_process_and_hides_database_passwords(tmp_path: Path) -> None:
    given = "postgresql+asyncpg://aitbc:s3cret@db.internal/keys"
    made = cluster(tmp_path, DATABASE_URL=given)
    said = topology(made, services(made))
    assert "s3cret" not in said
    hidden = "postgresql+asyncpg://aitbc:***@db.internal/keys"
    assert f"keys-2       NATS only, database {hidden}" in said
    assert f"NATS_URL={NODE_URLS} NATS_REPLICAS=3" in said
    assert "api-2        http://127.0.0.1:8001 (metrics" in said
    assert shown("sqlite+aiosqlite:////data/keys.db") == "sqlite+aiosqlite:////data/keys.db"


def test_the_topology_tells_the_cli_everything_it_needs_to_reach_the_cluster(
    tmp_path: Path,
) -> None:
    """Copied as printed, the CLI's line reaches the cluster: on TLS it cannot connect
    without the CA (and, with --mtls, the admin's certificate), and on PostgreSQL `events
    verify` reads the database, not DATA_DIR's SQLite file."""
    given = "postgresql://aitbc:s3cret@db.internal/keys"
    made = cluster(tmp_path, NATS_TLS_VERIFY="1", DATABASE_URL=given)
    cli = topology(made, services(made)).splitlines()[-1]
    tls = tmp_path / ".data" / "cluster" / "tls"
    for needed in (f"NATS_TLS_CA={tls / 'ca.pem'}", f"NATS_TLS_CERT={tls / 'admin.pem'}"):
        assert needed in cli
    assert "DATABASE_URL=postgresql://aitbc:***@db.internal/keys" in cli
    assert "s3cret" not in cli


def test_a_plans_file_that_does_not_validate_stops_it_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "plans.toml"
    bad.write_text("[plans.free]\nper_minute = 0\n")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / ".data"))
    monkeypatch.setenv("PLANS_FILE", str(bad))
    for name in ("CLUSTER_NATS_PORTS", "CLUSTER_API_PORTS"):  # ports nothing listens on
        monkeypatch.setenv(
            name, ",".join(str(port) for port in free_ports(3 if "NATS" in name else 2))
        )
    assert main([]) == 1
    assert f"aitbc-cluster: PLANS_FILE: {bad}: plan 'free'" in capsys.readouterr().err


def test_a_port_the_kernel_picks_again_is_not_handed_out_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two free_port() calls before either server binds: the kernel may pick the same port for
    both (seen once as `port … is given to keys-2 and to coordinator`)."""
    from aitbc_infra import nats_server

    picks = iter([41001, 41001, 41002])

    class Picked:
        def __enter__(self) -> Picked:
            self.port = next(picks)
            return self

        def __exit__(self, *_: object) -> None:
            return None

        def bind(self, _: object) -> None:
            return None

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.delenv("AITBC_PORT_RANGE", raising=False)
    monkeypatch.setattr(nats_server, "_handed", set())
    monkeypatch.setattr(nats_server.socket, "socket", Picked)
    assert [nats_server.free_port(), nats_server.free_port()] == [41001, 41002]
