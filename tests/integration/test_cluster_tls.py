"""A 3-node nats-server cluster on loopback with TLS on its routes, as infra/nats/cluster-3node
runs it (each node checks the others' certificates; clients speak TLS first and present the
roles' nkeys): messages cross the routes, and a node that offers its route without TLS is
never let in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from aitbc_infra.bus_tls import BusTls
from aitbc_infra.dev_ca import DevCA
from aitbc_runtime.bus_access import BusAccess
from tests.integration.shipped_nats import ROOT, loads, shipped, with_accounts
from tests.nats_cluster import Cluster, Node, cluster_of


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    tls = BusTls(DevCA(tmp_path / "tls"), verify=True).provision()
    with cluster_of(tmp_path, tls, jetstream=False) as made:
        yield made


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
