"""A nats-server cluster on loopback, as infra/nats/cluster-3node runs one: each node with the
roles' accounts and credentials, JetStream (so streams can have 3 replicas), TLS when asked
(on the client port and, each node checking the others' certificates, on the routes). Nodes
can be killed and started again on the same ports and store."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.js.api import StreamInfo
from nats.js.errors import APIError

from aitbc_infra.bus_config import BusCredentials, route_url, write_private
from aitbc_infra.bus_config import node_config as cluster_node_config
from aitbc_infra.bus_streams import ADMINS, provision
from aitbc_infra.bus_streams import jetstream as account_jetstream
from aitbc_infra.bus_tls import BusTls
from aitbc_infra.nats_server import free_port, nats_server_binary, terminate
from aitbc_infra.readiness import connects, run_to_end, until_ready
from aitbc_runtime.bus_access import BusAccess, TlsFields

NAMES = ("nats-1", "nats-2", "nats-3")


@dataclass
class Node:
    name: str
    folder: Path
    port: int = field(default_factory=free_port)
    route_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def route(self) -> str:
        return route_url(self.route_port)

    @property
    def log_file(self) -> Path:
        return self.folder / f"{self.name}.log"

    @property
    def config_file(self) -> Path:
        return self.folder / f"{self.name}.conf"

    def start(self) -> Node:
        log = open(self.log_file, "ab")  # noqa: SIM115 - the child owns it
        command = [nats_server_binary(), "-c", str(self.config_file)]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (a clean stop), or SIGKILL (the machine lost)."""
        if self.process is not None:
            terminate(self.process, timeout=10, kill=kill)
        self.process = None


def node_config(
    node: Node,
    peers: list[Node],
    credentials: BusCredentials,
    tls: BusTls | None,
    route_tls: bool = True,
    jetstream: bool = True,
) -> str:
    """A node as infra/nats/cluster-3node/node-N.conf has it, on loopback ports."""
    store = node.folder / node.name if jetstream else None
    routes = [peer.route for peer in peers]
    return cluster_node_config(
        node.name, node.port, node.route_port, routes, credentials, tls, store, route_tls
    )


@dataclass
class Cluster:
    root: Path
    credentials: BusCredentials
    tls: BusTls | None = None
    jetstream: bool = True
    nodes: list[Node] = field(default_factory=list)

    def add(self, name: str, route_tls: bool = True) -> Node:
        """A node that routes to the ones before it (the first to itself), started."""
        node = Node(name, self.root)
        peers = self.nodes[:] or [node]
        self.nodes.append(node)
        config = node_config(node, peers, self.credentials, self.tls, route_tls, self.jetstream)
        write_private(node.config_file, config)
        return self.start(node)

    def start(self, node: Node) -> Node:
        """(Again:) the same ports, store and configuration; returns once it lets clients in."""
        node.start()
        probe = connects(self.access(node))
        if not run_to_end(until_ready(probe, 20, lambda: node.process is None)):
            raise RuntimeError(f"{node.name} did not start: see {node.log_file}")
        return node

    def url(self, nodes: list[Node] | None = None) -> str:
        """NATS_URL for `nodes` (all by default): a comma-separated list, in that order."""
        scheme = "nats" if self.tls is None else "tls"
        return ",".join(f"{scheme}://127.0.0.1:{node.port}" for node in nodes or self.nodes)

    def access(self, node: Node | list[Node] | None = None, role: str = "admin") -> BusAccess:
        """How a client of `role` reaches `node` (or these nodes; all by default)."""
        nodes = [node] if isinstance(node, Node) else node
        tls: TlsFields = {} if self.tls is None else self.tls.client(role)
        return self.credentials.access(role, self.url(nodes), **tls)

    def node_at(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    async def jetstream_ready(self, within: float = 30.0) -> None:
        """Until the nodes have chosen a JetStream meta leader (streams can be made)."""
        nc = await nats.connect(**self.access().options())
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + within
            while True:
                try:
                    await nc.jetstream(timeout=2).account_info()
                    return
                except Exception:
                    if loop.time() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()

    async def streams(self, account: str) -> dict[str, StreamInfo]:
        """Every stream of `account`, as its admin sees it."""
        nc = await nats.connect(**self.access(role=ADMINS[account]).options())
        try:
            infos = await account_jetstream(nc, account).streams_info()
            return {info.config.name or "": info for info in infos}
        finally:
            await nc.close()

    async def all_current(self, replicas: int, within: float = 60.0) -> bool:
        """Until every stream of every account has `replicas` current copies: what a node that
        came back missed is copied to it before another may go, as in a rolling restart."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            try:
                found = [
                    info for account in ADMINS for info in (await self.streams(account)).values()
                ]
                if found and all(current_copies(info) == replicas for info in found):
                    return True
            except Exception:  # a node lost: the streams it led are choosing a new leader
                pass
            await asyncio.sleep(0.25)
        return False

    async def provision(self, replicas: int, within: float = 30.0) -> list[str]:
        """The mirrored streams and their mirrors, every stream at `replicas` (aitbc-bus-config).
        Tried again while the nodes have a meta leader but not yet every peer ("no suitable
        peers for placement" of a stream at 3 replicas), as `just cluster`'s readiness does."""
        await self.jetstream_ready()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                return await provision(self.access(role="keylog-admin"), self.access(), replicas)
            except APIError as exc:
                if exc.err_code != NO_PLACEMENT or loop.time() > deadline:
                    raise
                await asyncio.sleep(0.2)


NO_PLACEMENT = 10005  # JetStream: no suitable peers for placement (the cluster still forming)


def current_copies(info: StreamInfo) -> int:
    """How many current copies of the stream there are (the leader's and its replicas')."""
    if info.cluster is None or info.cluster.leader is None:
        return 0
    return 1 + sum(1 for peer in info.cluster.replicas or [] if peer.current and not peer.offline)


@contextmanager
def cluster_of(root: Path, tls: BusTls | None = None, jetstream: bool = True) -> Iterator[Cluster]:
    """Three nodes, started; stopped on exit."""
    credentials = BusCredentials(root / "creds").provision()
    made = Cluster(root, credentials, tls, jetstream)
    try:
        for name in NAMES:
            made.add(name)
        yield made
    finally:
        for node in made.nodes:
            node.stop()
