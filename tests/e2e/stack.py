"""The whole system as real processes on free ports: nats-server, keys, coordinator, edge."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from aitbc_contracts.messages import CheckKeys, encoder
from aitbc_contracts.subjects import KEYS_CHECK, USAGE_QUERY
from aitbc_contracts.usage import LastUsedQuery
from aitbc_infra.nats_server import NatsServer, free_port
from aitbc_infra.processes import ChildProcess as Process
from aitbc_infra.processes import answered

BIN = Path(sys.executable).parent


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
            await answered(self.nats.url, KEYS_CHECK, encoder.encode(CheckKeys([])), 90)
            await answered(self.nats.url, USAGE_QUERY, encoder.encode(LastUsedQuery("acc_x")), 90)

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
