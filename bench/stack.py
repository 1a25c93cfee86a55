"""The system under test as child processes on free ports: the services of aitbc_infra.stack
(nats-server, keys, usage, the sample Coordinator, edges), and the peer stack (redis-server +
bench/peer_app.py) and the bare responder.

Children are aitbc_infra's ChildProcess, as in tests/e2e/stack.py; what a benchmark adds is the
peer stack and RSS readings, and every child in this process tree is stopped on the way out
whatever happened.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from aitbc_infra import stack as definition
from aitbc_infra.layout import Layout, tls_switches
from aitbc_infra.nats_server import NatsServer, free_port
from aitbc_infra.processes import ChildProcess as Proc
from aitbc_infra.readiness import answers, http_ok, until_ready
from bench import nginx
from bench.null_responder import CHECK_SUBJECT

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
IDENTITY_MAX_AGE = "86400"  # seconds the benchmark's Coordinator believes a signed identity


@dataclass
class Stack:
    root: Path
    plan_limits: str
    log_level: str = "INFO"
    plans: str = ""  # a plans file's text (PLANS_FILE), over plan_limits
    database_url: str = ""  # the keys database ("": a SQLite file in root)
    layout: Layout = field(init=False)
    nats: NatsServer = field(init=False)
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        settings = {
            "PLAN_LIMITS": self.plan_limits,
            "LOG_LEVEL": self.log_level,
            # The direct scenario's identities are signed once, before the run (bench/state.py)
            "UPSTREAM_IDENTITY_MAX_AGE": IDENTITY_MAX_AGE,
        }
        if self.plans:
            plans_file = self.root / "plans.toml"
            plans_file.write_text(self.plans)
            settings["PLANS_FILE"] = str(plans_file)
        # NATS_TLS=1 / NATS_TLS_VERIFY=1: the bus on TLS (mutual), as `just up --tls` runs it
        self.layout = Layout.on_free_ports(
            self.root, env=settings, database_url=self.database_url, **tls_switches(os.environ)
        )
        self.nats = NatsServer(
            self.layout.nats_port,
            self.root / "nats",
            self.root / "nats.log",
            credentials=self.layout.credentials,  # the roles' users, as `just up` runs it
            tls=self.layout.bus_tls,
        )

    @property
    def upstream_url(self) -> str:
        return self.layout.upstream_url

    def add(
        self, name: str, argv: list[str], port: int | None = None, role: str = "admin", **env: str
    ) -> Proc:
        """A child of the benchmark's own, told the layout's settings and the credentials of
        bus role `role`."""
        told = {**self.layout.child_env(role), **env}
        proc = Proc(name, argv, told, self.root / f"{name}.log", port)
        self.procs[name] = proc
        return proc

    # --- the system -----------------------------------------------------------------------

    def start_service(self, name: str, wait: bool = True) -> Proc:
        """keys, usage or the Coordinator, as aitbc_infra.stack defines it."""
        proc = self.procs[name] = Proc.of(definition.service(self.layout, name), self.root)
        return proc.start(wait=wait)

    def start_gated_coordinator(self, name: str, wait: bool = True) -> Proc:
        """A second sample Coordinator on a port of its own, with the gate in process
        (`Layout(coordinator_gate=True)`: COORDINATOR_GATE=1, the edge's bus role, a usage
        spool of its own), beside the plain one that the edges forward to."""
        gated = replace(self.layout, coordinator_port=free_port(), coordinator_gate=True)
        service = replace(definition.coordinator(gated), name=name)
        proc = self.procs[name] = Proc.of(service, self.root)
        return proc.start(wait=wait)

    def start_usage(self, name: str) -> Proc:
        """Another usage process beside `usage`, sharing the partitions with it by leases. Not
        waited for: the usage probe is answered by any usage process, so whether it serves is
        for the lease bucket to say (bench/leases.py)."""
        service = definition.another(definition.service(self.layout, "usage"), name, 0)
        proc = self.procs[name] = Proc.of(service, self.root)
        return proc.start(wait=False)

    def start_edge(self, name: str, wait: bool = True, **env: str) -> Proc:
        metrics = str(free_port())  # its /metrics (bench.common.edge_metrics)
        proc = Proc.of(
            definition.edge(self.layout, name, free_port(), API_METRICS_PORT=metrics, **env),
            self.root,
        )
        self.procs[name] = proc
        return proc.start(wait=wait)

    def start_redis(self, wait: bool = True) -> Proc:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        port = free_port()
        argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.root), "--protected-mode", "no"]
        return self.add("redis", argv, port).start(wait=wait)

    def start_peer(self, redis: Proc, database: Path, wait: bool = True) -> Proc:
        port = free_port()
        return self.add(
            "peer",
            [sys.executable, "-m", "bench.peer_app"],
            port,
            PEER_PORT=str(port),
            PEER_REDIS_URL=f"redis://127.0.0.1:{redis.port}/0",
            PEER_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
            UPSTREAM_URL=self.upstream_url,
            PYTHONPATH=str(ROOT),
            **self.layout.identity_env(),  # it signs identities as the edge does
        ).start(wait=wait)

    def start_nginx(self, keys: list[tuple[str, str]], wait: bool = True) -> Proc | None:
        """Scenario N's nginx (bench/nginx.py) in front of the Coordinator, knowing `keys`
        ((account id, key) each); None where nginx is not installed."""
        binary = nginx.binary()
        if binary is None:
            return None
        port = free_port()
        config = nginx.write_config(self.root, port, self.layout.coordinator_port, keys)
        argv = [binary, "-p", str(self.root), "-c", str(config)]
        proc = Proc("nginx", argv, {}, self.root / "nginx.log", port)
        proc.ready = http_ok(f"http://127.0.0.1:{port}{nginx.HEALTH}")
        self.procs["nginx"] = proc
        return proc.start(wait=wait)

    def start_null_responder(self, name: str) -> Proc:
        """A bare nats-py responder: the ceiling a Python service on this bus can reach. It
        serves once it answers a check (`until_serving`). Its subjects are the benchmark's own,
        which no role of the system has: it connects as admin."""
        argv = [sys.executable, "-m", "bench.null_responder"]
        proc = self.add(name, argv, role="admin", PYTHONPATH=str(ROOT))
        proc.ready = answers(self.layout.access("admin"), CHECK_SUBJECT, definition.PING_KEYS)
        return proc.start(wait=False)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.stop()

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        self.procs.clear()
        self.nats.stop()


async def until_serving(proc: Proc, within: float = 60.0) -> None:
    """Until `proc`'s readiness probe says it serves, from the benchmark's own event loop."""
    assert proc.ready is not None
    if not await until_ready(proc.ready, within, proc.exited):
        raise RuntimeError(f"{proc.name} did not start: see {proc.log_file}")
