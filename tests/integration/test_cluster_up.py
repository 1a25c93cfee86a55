"""`just cluster` as a person runs it: three NATS nodes with every stream at 3 replicas, each
service twice, two edges; a key made through one edge works through the other; Ctrl-C stops
everything cleanly."""

from __future__ import annotations

import asyncio
import signal
import stat
import time
from pathlib import Path

import httpx
import nats
import pytest

from aitbc_contracts import subjects
from aitbc_infra.bus_config import BusCredentials
from aitbc_infra.bus_streams import ADMINS, jetstream
from aitbc_infra.nats_server import free_port, port_is_open
from tests.integration.test_up import JUST, JUSTFILE, Up, start
from tests.integration.test_up import up_factory as up_factory  # the fixture, for this module

pytestmark = pytest.mark.timeout(360)  # eleven processes started one after another, on 2 cores

PORTS = {  # each setting of aitbc_infra.cluster.PORTS, with how many ports it takes
    "CLUSTER_NATS_PORTS": 3,
    "CLUSTER_ROUTE_PORTS": 3,
    "CLUSTER_API_PORTS": 2,
    "CLUSTER_API_METRICS_PORTS": 2,
    "CLUSTER_KEYS_METRICS_PORTS": 2,
    "CLUSTER_USAGE_METRICS_PORTS": 2,
}


async def stream_replicas(creds: Path, url: str) -> dict[str, int]:
    """Every stream and KV bucket of every account the admin manages and its own (mirrors
    included), by account, with its replicas, as the admin sees them."""
    nc = await nats.connect(**BusCredentials(creds).access("admin", url).options())
    try:
        found = {}
        for account, admin in ADMINS.items():
            if admin == "admin":
                for info in await jetstream(nc, account).streams_info():
                    found[f"{account} {info.config.name}"] = info.config.num_replicas or 1
        return found
    finally:
        await nc.close()


def route_chatter(line: str) -> bool:
    """nats-server's notes on the routes between the nodes, which read as errors and are not:
    two nodes that dial each other at once keep one route (the other ends in a "Read Error"),
    and nodes stopping together find a route closed while they write to it, or a stream's
    group starting while the node's own system account is already gone."""
    routes = "rid:" in line or " route " in line
    return line.startswith("nats-") and (routes or "system account not setup" in line)


def decided_exactly(edge: str, key: str, within: float = 60.0) -> httpx.Response:
    """A call with `key` through `edge`, once one is decided by a usage service (not by the
    edge's fail policy: a first decision may wait on connections still being made)."""
    deadline = time.monotonic() + within
    while True:
        answer = httpx.get(edge + "/v1/jobs", headers={"X-API-Key": key}, timeout=10)
        if answer.headers.get("x-ratelimit-mode") == "exact" or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_the_cluster_serves_through_both_edges_and_stops_cleanly(
    up_factory: list[Up], tmp_path: Path
) -> None:
    ports = {name: [free_port() for _ in range(count)] for name, count in PORTS.items()}
    settings = {name: ",".join(str(port) for port in taken) for name, taken in ports.items()}
    argv = [JUST, "--justfile", str(JUSTFILE), "--no-deps", "cluster"]
    data = tmp_path / "data" / "cluster"
    cluster = start(
        up_factory, tmp_path, argv, DATA_DIR=str(tmp_path / "data"), READY_TIMEOUT="90", **settings
    )
    cluster.wait_for("everything is up", timeout=300)
    nats_url = ",".join(f"nats://127.0.0.1:{port}" for port in ports["CLUSTER_NATS_PORTS"])
    assert f"NATS_URL={nats_url} NATS_REPLICAS=3" in cluster.output  # the topology
    assert "plans: the defaults (free 60, pro 600, enterprise 6000" in cluster.output
    first, second = (f"http://127.0.0.1:{port}" for port in ports["CLUSTER_API_PORTS"])
    for edge in (first, second):
        assert httpx.get(edge + "/v1/health", timeout=10).json() == {"status": "ok"}

    signup = httpx.post(first + "/v1/accounts", json={}, timeout=10)
    assert signup.status_code == 201, signup.text
    master = signup.json()["master_key"]["key"]
    made = httpx.post(
        first + "/v1/api-keys", json={"name": "cluster"}, headers={"X-API-Key": master}, timeout=10
    )
    assert made.status_code == 201, made.text
    used = decided_exactly(second, made.json()["key"])
    assert used.status_code == 200, used.text
    assert used.headers["x-ratelimit-mode"] == "exact"

    metrics = f"http://127.0.0.1:{ports['CLUSTER_API_METRICS_PORTS'][1]}/metrics"
    assert metrics in cluster.output  # it says where
    assert "aitbc_auth_cache_total" in httpx.get(metrics, timeout=10).text
    for setting, gauge in (
        ("CLUSTER_KEYS_METRICS_PORTS", "aitbc_keys_relay_lag_events"),
        ("CLUSTER_USAGE_METRICS_PORTS", "aitbc_usage_partitions_owned"),
    ):
        for port in ports[setting]:  # each process of the service, on a port of its own
            metrics = f"http://127.0.0.1:{port}/metrics"
            assert metrics in cluster.output
            assert gauge in httpx.get(metrics, timeout=10).text
    replicas = asyncio.run(stream_replicas(data / "creds", nats_url))
    assert {f"USAGE {subjects.USAGE_STREAM}", f"READ {subjects.KEY_EVENTS_STREAM}"} <= set(replicas)
    assert set(replicas.values()) == {3}, replicas  # every stream and bucket, on every node
    private = [*(data / "creds").glob("*.nk"), *data.glob("nats-*.conf")]
    private.append(data / "upstream-identity.secret")
    assert {stat.S_IMODE(path.stat().st_mode) for path in private} == {0o600}

    # Ctrl-C in a terminal signals the whole foreground group: `just` and the runner
    assert cluster.stop(signal.SIGINT, group=True) == 0
    for name in ("keys-1", "keys-2", "usage-1", "usage-2", "api-1", "api-2", "nats-1"):
        assert f"stopping {name}" in cluster.output  # each ran until the end
    assert "all stopped" in cluster.output
    assert [line for line in cluster.errors() if not route_chatter(line)] == []
    assert not any(port_is_open(port) for taken in ports.values() for port in taken)
