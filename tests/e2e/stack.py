"""The whole system of aitbc_infra.stack as real processes on free ports, with a data folder of
its own: nats-server, keys, usage, the sample Coordinator, the edge (and any edges a test adds).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aitbc_infra import stack as definition
from aitbc_infra.layout import Layout, TlsSwitches, tls_switches
from aitbc_infra.nats_server import NatsServer, free_port
from aitbc_infra.processes import ChildProcess as Process
from aitbc_infra.readiness import http_ok, run_to_end, until_ready
from tests.scrape import scrape

BIN = Path(sys.executable).parent

TEST_SETTINGS = {
    "LOG_LEVEL": "INFO",
    # Tests make many bad keys, accounts and sign-ins from one address; the tests of those
    # budgets run edges of their own with small ones.
    "AUTH_FAILURE_BUDGET": "1000000",
    "SIGNUP_PER_ADDRESS_PER_HOUR": "1000000",
    "SIGNUP_GLOBAL_PER_MINUTE": "1000000",
    "SIGNIN_PER_ADDRESS_PER_MINUTE": "1000000",
    "SIGNIN_GLOBAL_PER_MINUTE": "1000000",
    "UPSTREAM_TIMEOUT": "3",
}


@dataclass
class Stack:
    root: Path
    database_url: str = ""  # the keys service's; "" is a SQLite file in `root`
    extra_env: dict[str, str] = field(default_factory=dict)  # for every process, over the rest
    # TLS on the bus: by default as NATS_TLS / NATS_TLS_VERIFY say (`NATS_TLS=1 just chaos`)
    bus_tls: TlsSwitches = field(default_factory=lambda: tls_switches(os.environ))
    coordinator_gate: bool = False  # the sample Coordinator runs the gate in process
    layout: Layout = field(init=False)
    nats: NatsServer = field(init=False)
    processes: dict[str, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        settings = {**TEST_SETTINGS, **self.extra_env}
        self.layout = Layout.on_free_ports(
            self.root,
            database_url=self.database_url,
            env=settings,
            coordinator_gate=self.coordinator_gate,
            **self.bus_tls,
        )
        self.database_url = self.layout.database_url
        self.nats = NatsServer(
            self.layout.nats_port,
            self.root / "nats",
            self.root / "nats.log",
            credentials=self.layout.credentials,
            tls=self.layout.bus_tls,
        )

    @property
    def api_url(self) -> str:
        return self.layout.api_url

    def env(self, role: str = "admin") -> dict[str, str]:
        """What every service is told, with the credentials of `role` (an operator's CLI run
        against this system: admin)."""
        return self.layout.child_env(role)

    def add_service(self, name: str) -> Process:
        """A service of the definition, by name."""
        process = Process.of(definition.service(self.layout, name), self.root)
        self.processes[name] = process
        return process

    def add_edge(self, name: str, **env: str) -> Process:
        """One more edge on a free port, with its /metrics on another (`metrics_url`), in
        front of this system's Coordinator unless `env` names another UPSTREAM_URL."""
        env = {"API_METRICS_PORT": str(free_port()), **env}
        process = Process.of(definition.edge(self.layout, name, free_port(), **env), self.root)
        self.processes[name] = process
        return process

    def add_gated_app(self, name: str, argv: list[str], port_setting: str) -> Process:
        """An app with the gate in process (aitbc_gate.GateMiddleware) on a free port, which
        it is told in the variable `port_setting`: on this system's bus as an edge is, with
        a usage spool of its own; it serves once its /v1/health answers."""
        port = free_port()
        env = {
            **self.layout.child_env("edge"),
            port_setting: str(port),
            "USAGE_SPOOL_DIR": str(self.root / f"{name}.usage-spool"),
        }
        ready = http_ok(f"http://127.0.0.1:{port}{definition.HEALTH_PATH}")
        process = Process(name, argv, env, self.root / f"{name}.log", port, ready)
        self.processes[name] = process
        return process

    def start(self) -> Stack:
        self.start_bus()
        self.add_service("coordinator").start()
        self.add_service("api").start()
        return self

    def start_bus(self) -> Stack:
        """nats-server with the keys and usage services: all that a test of the bus needs."""
        self.nats.start()
        for name in ("keys", "usage"):  # side by side: each takes a while to import
            self.add_service(name).start(wait=False)
        self.wait_for_services()
        return self

    def wait_for_services(self, within: float = 90) -> None:
        """Until the keys and usage services answer on the bus."""
        for name in ("keys", "usage"):
            probe = definition.service(self.layout, name).ready
            process = self.processes[name]
            assert probe is not None
            if not run_to_end(until_ready(probe, within, process.exited)):
                raise RuntimeError(f"{name} did not answer: see {self.root / name}.log")

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        self.nats.stop()

    def metrics(self, name: str = "api") -> str:
        """The /metrics text of the process `name` (`keys`, `usage`, or an edge), from its
        operators' port."""
        service = name if name in definition.METRICS_SETTINGS else "api"
        return scrape(definition.metrics_url(self.processes[name].env, service))

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.root.glob("*.log"))
