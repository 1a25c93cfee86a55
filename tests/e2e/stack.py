"""The whole system as real processes on free ports: nats-server, keys, coordinator, edge."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats

from aitbc_contracts.bus import until_answered
from aitbc_contracts.messages import CheckKeys, encoder
from aitbc_contracts.subjects import KEYS_CHECK, USAGE_QUERY
from aitbc_contracts.usage import LastUsedQuery
from aitbc_infra.nats_server import NatsServer, free_port, port_is_open

BIN = Path(sys.executable).parent


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_file: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Process:
        log = open(self.log_file, "ab")  # noqa: SIM115 - the child owns it
        self.popen = subprocess.Popen(
            self.argv, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
        )
        if self.port is not None:
            deadline = time.monotonic() + timeout
            while not port_is_open(self.port):
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start: see {self.log_file}")
                time.sleep(0.05)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.popen and self.popen.poll() is None:
            if kill:
                self.popen.kill()
            else:
                self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen = None


@dataclass
class Stack:
    root: Path
    nats: NatsServer = field(init=False)
    processes: dict[str, Process] = field(default_factory=dict)
    database_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)  # for every process, over the rest

    def __post_init__(self) -> None:
        self.nats = NatsServer(free_port(), self.root / "nats", log_file=self.root / "nats.log")
        self.database_url = self.database_url or f"sqlite+aiosqlite:///{self.root / 'keys.db'}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.processes['api'].port}"

    def env(self) -> dict[str, str]:
        return {
            "NATS_URL": self.nats.url,
            "DATABASE_URL": self.database_url,
            "USAGE_DATABASE_URL": f"sqlite+aiosqlite:///{self.root / 'usage.db'}",
            "LOG_LEVEL": "INFO",
            # Tests make many bad keys on purpose from one address; the brute-force test
            # runs an edge of its own with a small budget.
            "AUTH_FAILURE_BUDGET": "1000000",
            **self.extra_env,
        }

    def add(self, name: str, argv: list[str], port: int | None = None, **env: str) -> Process:
        process = Process(name, argv, {**self.env(), **env}, self.root / f"{name}.log", port)
        self.processes[name] = process
        return process

    def start(self) -> Stack:
        self.nats.start()
        upstream = free_port()
        self.add("keys", [str(BIN / "aitbc-keys")]).start()
        self.add("usage", [str(BIN / "aitbc-usage")]).start()
        self.wait_for_services()
        self.add(
            "coordinator",
            [str(BIN / "aitbc-sample-coordinator")],
            upstream,
            COORDINATOR_PORT=str(upstream),
        ).start()
        api = free_port()
        self.add(
            "api",
            [str(BIN / "aitbc-api")],
            api,
            API_PORT=str(api),
            UPSTREAM_URL=f"http://127.0.0.1:{upstream}",
            UPSTREAM_TIMEOUT="3",
        ).start()
        self.wait_ready()
        return self

    def wait_for_services(self) -> None:
        """Until the keys and usage services answer on the bus."""

        async def ask() -> None:
            nc = await nats.connect(self.nats.url)
            try:
                await until_answered(nc, KEYS_CHECK, encoder.encode(CheckKeys([])), 90)
                await until_answered(nc, USAGE_QUERY, encoder.encode(LastUsedQuery("acc_x")), 90)
            finally:
                await nc.close()

        asyncio.run(ask())

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the edge reaches the keys service (sign-up works) and the upstream."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                health = httpx.get(self.api_url + "/v1/health", timeout=2)
                if health.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("stack not ready")

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        self.nats.stop()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.root.glob("*.log"))
