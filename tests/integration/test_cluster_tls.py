"""A 3-node nats-server cluster on loopback with TLS on its routes, as infra/nats/cluster-3node
runs it (each node checks the others' certificates; clients speak TLS first and present the
roles' nkeys): messages cross the routes, and a node that offers its route without TLS is
never let in."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from aitbc_infra.bus_config import BusCredentials, write_private
from aitbc_infra.bus_tls import BusTls
from aitbc_infra.dev_ca import DevCA
from aitbc_infra.nats_server import free_port, nats_server_binary, terminate
from aitbc_infra.readiness import connects, run_to_end, until_ready
from aitbc_runtime.bus_access import BusAccess
from tests.integration.shipped_nats import ROOT, loads, shipped, with_accounts


@dataclass
class Node:
    name: str
    port: int
    route_port: int
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def route(self) -> str:
        return f"nats-route://127.0.0.1:{self.route_port}"

    def start(self, config: str, folder: Path) -> Node:
        config_file = folder / f"{self.name}.conf"
        write_private(config_file, config)
        log = open(self.log_file, "ab")  # noqa: SIM115 - the child owns it
        command = [nats_server_binary(), "-c", str(config_file)]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, timeout=10)


def node_config(
    node: Node, peers: list[Node], credentials: BusCredentials, tls: BusTls, route_tls: bool
) -> str:
    """A node as infra/nats/cluster-3node/node-N.conf has it, on loopback ports."""
    routes = ", ".join(peer.route for peer in peers)
    cluster = (
        f"cluster {{\n  name: aitbc\n  listen: 127.0.0.1:{node.route_port}\n"
        f"  routes: [{routes}]\n  connect_retries: 30\n"
        f"{tls.route_block() if route_tls else ''}}}\n"
    )
    head = f"server_name: {node.name}\nlisten: 127.0.0.1:{node.port}\n"
    return head + tls.server_block() + credentials.accounts() + cluster


@dataclass
class Cluster:
    root: Path
    credentials: BusCredentials
    tls: BusTls
    nodes: list[Node]

    def add(self, name: str, route_tls: bool = True) -> Node:
        node = Node(name, free_port(), free_port(), self.root / f"{name}.log")
        peers = self.nodes[:] or [node]
        self.nodes.append(node)
        config = node_config(node, peers, self.credentials, self.tls, route_tls)
        node.start(config, self.root)
        access = self.access(node)
        if not run_to_end(until_ready(connects(access), 20, lambda: node.process is None)):
            raise RuntimeError(f"{name} did not start: see {node.log_file}")
        return node

    def access(self, node: Node, role: str = "admin") -> BusAccess:
        url = f"tls://127.0.0.1:{node.port}"
        return self.credentials.access(role, url, **self.tls.client(role))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    credentials = BusCredentials(tmp_path / "creds").provision()
    tls = BusTls(DevCA(tmp_path / "tls"), verify=True).provision()
    made = Cluster(tmp_path, credentials, tls, [])
    try:
        for name in ("nats-1", "nats-2", "nats-3"):
            made.add(name)
        yield made
    finally:
        for node in made.nodes:
            node.stop()


async def client(access: BusAccess) -> NATS:
    return await nats.connect(**access.options(), connect_timeout=2, allow_reconnect=False)


async def arrives(cluster: Cluster, sender: Node, receiver: Node, within: float) -> bool:
    """Whether a message published on `sender` reaches a subscriber on `receiver` (asked
    again until `within` seconds have passed: routes take a moment to form)."""
    inbound, outbound = await client(cluster.access(receiver)), await client(cluster.access(sender))
    try:
        subscription = await inbound.subscribe("cluster.check")
        await inbound.flush()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await outbound.publish("cluster.check", sender.name.encode())
            try:
                message = await subscription.next_msg(timeout=0.5)
            except nats.errors.TimeoutError:
                continue
            return message.data == sender.name.encode()
        return False
    finally:
        await inbound.close()
        await outbound.close()


async def test_messages_cross_routes_that_speak_tls(cluster: Cluster) -> None:
    first, second, third = cluster.nodes
    assert await arrives(cluster, third, first, within=20)
    assert await arrives(cluster, first, second, within=20)
    logs = "".join(node.log_file.read_text() for node in cluster.nodes)
    assert "TLS handshake error" not in logs
    assert "Route connection created" in logs


async def test_a_node_without_route_tls_is_not_let_in(cluster: Cluster) -> None:
    first = cluster.nodes[0]
    intruder = cluster.add("intruder", route_tls=False)  # its client port still has TLS
    assert not await arrives(cluster, intruder, first, within=3)
    assert "TLS route handshake error" in first.log_file.read_text()


SHIPPED = ROOT / "infra" / "nats" / "cluster-3node"


@pytest.mark.parametrize("name", ["node-1.conf", "node-2.conf", "node-3.conf"])
def test_the_shipped_node_configs_load_with_tls_on_both_ports(name: str, tmp_path: Path) -> None:
    """infra/nats/cluster-3node as nats-server reads it, with a development CA where the
    container mounts its certificates, beside the accounts file it includes."""
    text = (SHIPPED / name).read_text()
    assert text.count("tls {") == 2 and "handshake_first: true" in text
    config = shipped(SHIPPED / name, tmp_path)
    with_accounts(tmp_path)
    checked = loads(config)
    assert checked.returncode == 0, checked.stdout + checked.stderr
