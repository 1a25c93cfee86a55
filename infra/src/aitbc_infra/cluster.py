"""`aitbc-cluster` (`just cluster`): the many-machine shape on one machine, in the foreground
until Ctrl-C, as `just up` runs the one-machine shape (same switches, same exit codes).

Three nats-server nodes clustered on loopback, with JetStream and the roles' credentials (made
once in the data folder, mode 0600); once the three are up, the bus is provisioned as its
admins with every stream and bucket at 3 replicas. Then the services of aitbc_infra.stack, on
a `Layout` whose NATS_URL lists the three nodes: two keys services, two usage services, the
sample Coordinator and two edges. Only the nodes are defined here: every service is the one
`just up` runs, with the same settings.

The keys services share DATABASE_URL when it is set (PostgreSQL), else one SQLite file in the
data folder: this machine's stand-in for the database a deployment's keys services share. The
usage services likewise share USAGE_DATABASE_URL, else one usage.db. Neither is given
USAGE_PARTITIONS: how usage processes share the partitions is theirs to settle.

The data folder is DATA_DIR/cluster, apart from `just up`'s: a key log in a database and its
copy on the bus go together, and the cluster's bus is not `just up`'s.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from aitbc_infra import runner, stack
from aitbc_infra.bus_config import BusCredentials, node_config, route_url, write_private
from aitbc_infra.layout import ConfigError, Layout, tls_switches
from aitbc_infra.nats_server import nats_server_binary, provisioned
from aitbc_infra.readiness import connects
from aitbc_infra.supervisor import Service
from aitbc_runtime import environment, redaction

NODES = ("nats-1", "nats-2", "nats-3")
PORTS = {  # each setting, with its defaults: one port a process
    "CLUSTER_NATS_PORTS": (4322, 4323, 4324),  # the nodes' clients
    "CLUSTER_ROUTE_PORTS": (6322, 6323, 6324),  # the nodes' routes to each other
    "CLUSTER_API_PORTS": (8000, 8001),  # the edges
    "CLUSTER_API_METRICS_PORTS": (8100, 8101),  # the edges' /metrics, on 127.0.0.1 only
    "CLUSTER_KEYS_METRICS_PORTS": (8102, 8103),  # the keys services' /metrics, likewise
    "CLUSTER_USAGE_METRICS_PORTS": (8104, 8105),  # the usage services'
}
# The services of stack.DEFINITIONS run more than once [once; edges: CLUSTER_API_PORTS]: a
# process for each port of the setting named, its /metrics there
COPIES = {"keys": "CLUSTER_KEYS_METRICS_PORTS", "usage": "CLUSTER_USAGE_METRICS_PORTS"}


@dataclass(frozen=True)
class Cluster:
    """`config`: what `just up` would be given to run on this cluster's bus (its layout: where
    the data, databases and credentials are, NATS_URL listing the nodes); `ports`: PORTS'."""

    config: runner.Config
    ports: Mapping[str, tuple[int, ...]]
    # A process that dies is started again this many seconds later, the rest running on
    # (None: a death stops everything, as in `just up`)
    restart_after: float | None = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Cluster:
        """PORTS' settings, DATA_DIR (its `cluster` folder), and `just up`'s other settings:
        DATABASE_URL, USAGE_DATABASE_URL, COORDINATOR_PORT, the hosts, NATS_TLS..., timeouts."""
        ports = {name: _ports(env, name, default) for name, default in PORTS.items()}
        scheme = "tls" if tls_switches(env)["nats_tls"] else "nats"
        nats = ports["CLUSTER_NATS_PORTS"]
        as_up = {
            **{name: value for name, value in env.items() if name != "UP_SERVICES"},
            "DATA_DIR": str(environment.data_dir(env) / "cluster"),
            "NATS_URL": ",".join(f"{scheme}://127.0.0.1:{port}" for port in nats),
            "NATS_PORT": str(nats[0]),
            "NATS_REPLICAS": str(len(NODES)),
            "NATS_CREDS_DIR": "",  # the cluster's own, in its data folder
            "API_PORT": str(ports["CLUSTER_API_PORTS"][0]),
            "API_METRICS_PORT": str(ports["CLUSTER_API_METRICS_PORTS"][0]),
            "KEYS_METRICS_PORT": str(ports["CLUSTER_KEYS_METRICS_PORTS"][0]),
            "USAGE_METRICS_PORT": str(ports["CLUSTER_USAGE_METRICS_PORTS"][0]),
        }
        restart = env.get("CLUSTER_RESTART_AFTER", "2").strip()
        try:
            restart_after = None if restart in ("", "off") else float(restart)
        except ValueError:
            raise ConfigError(f"CLUSTER_RESTART_AFTER: seconds or 'off', not {restart!r}") from None
        return cls(runner.Config.from_env(as_up), ports, restart_after)

    @property
    def layout(self) -> Layout:
        return self.config.layout

    def listeners(self) -> list[tuple[str, str, int, str]]:
        """(process, host, port, setting) of every port the cluster listens on."""
        layout, ports = self.layout, self.ports
        edges = [f"api-{n}" for n in range(1, len(ports["CLUSTER_API_PORTS"]) + 1)]
        hosts = {"CLUSTER_API_PORTS": layout.api_host}  # the others: 127.0.0.1
        found = [
            (process, hosts.get(setting, "127.0.0.1"), port, setting)
            for setting, processes in (
                ("CLUSTER_NATS_PORTS", NODES),
                ("CLUSTER_ROUTE_PORTS", NODES),
                ("CLUSTER_API_PORTS", edges),
                ("CLUSTER_API_METRICS_PORTS", edges),
                *((setting, copies(name, ports[setting])) for name, setting in COPIES.items()),
            )
            for process, port in zip(processes, ports[setting], strict=True)
        ]
        coordinator = ("coordinator", layout.coordinator_host, layout.coordinator_port)
        return [*found, (*coordinator, "COORDINATOR_PORT")]


def copies(name: str, metrics_ports: tuple[int, ...]) -> list[str]:
    """The names of a service's processes: one for each of its metrics ports."""
    return [f"{name}-{n}" for n in range(1, len(metrics_ports) + 1)]


def _ports(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    value = env.get(name) or ",".join(str(port) for port in default)
    try:
        ports = tuple(int(part) for part in value.split(","))
    except ValueError:
        ports = ()
    if len(ports) != len(default) or not all(0 < port < 65536 for port in ports):
        raise ConfigError(
            f"{name} must be {len(default)} port numbers separated by commas, not {value!r}"
        )
    return ports


def preflight(cluster: Cluster) -> None:
    """Refuse to start anything when a port is given twice or is taken already."""
    listeners = cluster.listeners()
    seen: dict[int, str] = {}
    for process, _, port, setting in listeners:
        if port in seen:
            raise ConfigError(f"port {port} is given to {seen[port]} and to {process} ({setting})")
        seen[port] = process
    runner.refuse_taken_ports(listeners)
    cluster.layout.data_dir.mkdir(parents=True, exist_ok=True)


def nodes(cluster: Cluster) -> list[Service]:
    """The nodes, their configuration written now. Each reaches out to the ones before it (the
    first to itself only), so none dials a node that is not listening yet; the routes they
    announce complete the mesh. The last is ready once the bus is provisioned with every
    stream at 3 replicas: JetStream needs two nodes to choose a leader. They stop together:
    one by one, each would call out for the ones stopped before it."""
    layout = cluster.layout
    assert layout.creds_dir is not None
    credentials = BusCredentials(layout.creds_dir).provision()
    tls = layout.bus_tls
    if tls is not None:
        tls.provision()
    urls = layout.bus_url.split(",")
    route_ports = cluster.ports["CLUSTER_ROUTE_PORTS"]
    table = []
    for index, (name, url, route_port) in enumerate(zip(NODES, urls, route_ports, strict=True)):
        routes = [route_url(port) for port in route_ports[: max(index, 1)]]
        store, config_file = layout.data_dir / name, layout.data_dir / f"{name}.conf"
        port = cluster.ports["CLUSTER_NATS_PORTS"][index]
        config = node_config(name, port, route_port, routes, credentials, tls, store)
        write_private(config_file, config)
        ready = connects(layout.access("admin", url))
        if name == NODES[-1]:
            admins = layout.access("keylog-admin"), layout.access("admin")
            ready = provisioned(ready, *admins, replicas=layout.nats_replicas)
        address = f"{url} (routes 127.0.0.1:{route_port}, JetStream in {store})"
        argv = [nats_server_binary(), "-c", str(config_file)]
        table.append(Service(name, argv, {}, ready, address, port, group="nats"))
    return table


def services(cluster: Cluster) -> list[Service]:
    """Everything, in the order it starts (it stops in reverse): the nodes, then each service
    of stack.DEFINITIONS on the cluster's layout, once for each port of its COPIES setting
    (its /metrics there). A copy's readiness probe is its service's: a question on the bus
    that any copy may answer, so the second is ready once it runs; should it die, everything
    stops, as when any process does."""
    layout = cluster.layout
    table = nodes(cluster)
    for name in stack.DEFINITIONS:
        if name == "nats":
            continue
        if name == "api":
            table += edges(cluster)
            continue
        service = stack.service(layout, name)
        if name not in COPIES:
            table.append(service)
            continue
        ports = cluster.ports[COPIES[name]]
        named = zip(copies(name, ports), ports, strict=True)
        table += [stack.another(service, copy, port) for copy, port in named]
    return table


def edges(cluster: Cluster) -> list[Service]:
    """An edge on each port of CLUSTER_API_PORTS, its /metrics on CLUSTER_API_METRICS_PORTS'."""
    ports = cluster.ports["CLUSTER_API_PORTS"], cluster.ports["CLUSTER_API_METRICS_PORTS"]
    return [
        stack.edge(cluster.layout, f"api-{n}", port, API_METRICS_PORT=str(metrics))
        for n, (port, metrics) in enumerate(zip(*ports, strict=True), start=1)
    ]


def topology(cluster: Cluster, table: list[Service]) -> str:
    """What runs where, for the person who started it."""
    layout = cluster.layout
    databases = {"keys": layout.database_url, "usage": layout.usage_database_url}
    width = max(len(service.name) for service in table)
    lines = ["the cluster:"]
    for service in table:
        kind = service.name.rsplit("-", 1)[0]
        database, where = databases.get(kind), service.address
        if database is not None:
            metrics = stack.metrics_url(service.env, kind)
            where = stack.with_metrics(f"NATS only, database {shown(database)}", metrics)
        lines.append(f"  {service.name:<{width}}  {where}")
    lines.append(f"every process: NATS_URL={layout.bus_url} NATS_REPLICAS={layout.nats_replicas}")
    if any(url.startswith("sqlite") for url in databases.values()):
        lines.append(
            "SQLite: one file a service, shared by its two processes: this machine's stand-in "
            "for the PostgreSQL a deployment shares (DATABASE_URL, USAGE_DATABASE_URL)"
        )
    lines.append(f"data in {layout.data_dir}")
    lines.append(f"the `aitbc` CLI: {' '.join(cli_settings(layout))} aitbc ...")
    return "\n".join(lines)


def cli_settings(layout: Layout) -> list[str]:
    """What the `aitbc` CLI needs to reach this cluster, as NAME=value: on TLS, the CA (and
    the admin's certificate with --mtls), without which it cannot connect; on PostgreSQL, the
    database `events verify` reads (its password hidden)."""
    settings = {"DATA_DIR": str(layout.data_dir), "NATS_URL": layout.bus_url}
    if layout.bus_tls is not None:
        settings |= layout.bus_tls.env("admin")
    if not layout.database_url.startswith("sqlite"):
        settings["DATABASE_URL"] = shown(layout.database_url)
    return [f"{name}={value}" for name, value in settings.items()]


def shown(url: str) -> str:
    """A database URL as it may be printed: without its password."""
    return redaction.without_secrets(url)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    env = runner.settings(arguments, os.environ, prog="aitbc-cluster", doc=__doc__ or "")
    try:
        cluster = Cluster.from_env(env)
        preflight(cluster)
        table = services(cluster)
        plans = runner.plans_note(env)
    except ConfigError as exc:
        print(f"aitbc-cluster: {exc}", file=sys.stderr)
        return 1
    summary = topology(cluster, table)
    return asyncio.run(
        runner.supervise(
            table, cluster.config, [plans], summary=summary, restart_after=cluster.restart_after
        )
    )


if __name__ == "__main__":
    sys.exit(main())
