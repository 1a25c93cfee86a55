"""The system under test as child processes on free ports: nats-server, keys, usage, the sample
Coordinator, edges, and the peer stack (redis-server + bench/peer_app.py).

Children are aitbc_infra's ChildProcess, as in tests/e2e/stack.py; what a benchmark adds is the
peer stack and RSS readings, and every child in this process tree is stopped on the way out
whatever happened.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aitbc_infra.nats_server import NatsServer, free_port
from aitbc_infra.processes import ChildProcess as Proc
from aitbc_infra.processes import answered as answered

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stack:
    root: Path
    plan_limits: str
    log_level: str = "INFO"
    nats: NatsServer = field(init=False)
    procs: dict[str, Proc] = field(default_factory=dict)
    upstream_port: int = 0

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.nats = NatsServer(free_port(), self.root / "nats", log_file=self.root / "nats.log")

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    def env(self) -> dict[str, str]:
        return {
            "NATS_URL": self.nats.url,
            "DATABASE_URL": f"sqlite+aiosqlite:///{self.root / 'keys.db'}",
            "USAGE_DATABASE_URL": f"sqlite+aiosqlite:///{self.root / 'usage.db'}",
            "PLAN_LIMITS": self.plan_limits,
            "LOG_LEVEL": self.log_level,
            "PYTHONUNBUFFERED": "1",
        }

    def add(self, name: str, argv: list[str], port: int | None = None, **env: str) -> Proc:
        proc = Proc(name, argv, {**self.env(), **env}, self.root / f"{name}.log", port)
        self.procs[name] = proc
        return proc

    # --- the system -----------------------------------------------------------------------

    def start_coordinator(self, wait: bool = True) -> Proc:
        self.upstream_port = free_port()
        return self.add(
            "coordinator",
            [str(BIN / "aitbc-sample-coordinator")],
            self.upstream_port,
            COORDINATOR_PORT=str(self.upstream_port),
        ).start(wait=wait)

    def start_edge(self, name: str, wait: bool = True) -> Proc:
        port = free_port()
        return self.add(
            name,
            [str(BIN / "aitbc-api")],
            port,
            API_PORT=str(port),
            UPSTREAM_URL=self.upstream_url,
        ).start(wait=wait)

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
        ).start(wait=wait)

    def start_null_responder(self, name: str) -> Proc:
        """A bare nats-py responder: the ceiling a Python service on this bus can reach."""
        return self.add(
            name, [sys.executable, "-m", "bench.null_responder"], PYTHONPATH=str(ROOT)
        ).start()

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.stop()

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        self.procs.clear()
        self.nats.stop()
