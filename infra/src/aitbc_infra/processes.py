"""Child processes of a test or benchmark stack: a service of aitbc_infra.stack (or a helper of
the benchmarks), its output in a log file, started until its readiness probe says it serves,
stopped with SIGTERM (then SIGKILL)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aitbc_infra.nats_server import terminate
from aitbc_infra.readiness import Probe, port_open, run_to_end, until_ready
from aitbc_infra.supervisor import Service


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class ChildProcess:
    name: str
    argv: list[str]
    env: dict[str, str]  # over this process's own environment
    log_file: Path
    port: int | None = None
    ready: Probe | None = None  # None: its port accepts connections (if it has one)
    popen: subprocess.Popen[bytes] | None = None

    @classmethod
    def of(cls, service: Service, log_dir: Path) -> ChildProcess:
        """`service` as a child of this process, its output in `log_dir`/<name>.log."""
        argv, env = list(service.argv), dict(service.env)
        log_file = log_dir / f"{service.name}.log"
        return cls(service.name, argv, env, log_file, service.port, service.ready)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exited(self) -> bool:
        return self.popen is not None and self.popen.poll() is not None

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def start(self, timeout: float = 60.0, wait: bool = True) -> ChildProcess:
        log = open(self.log_file, "ab")  # noqa: SIM115 - the child owns it
        self.popen = subprocess.Popen(
            self.argv, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
        )
        if wait:
            self.wait(timeout)
        return self

    def wait(self, timeout: float = 60.0) -> ChildProcess:
        """Until it serves (at once for a process with neither a probe nor a port)."""
        assert self.popen is not None
        probe = self.ready
        if probe is None and self.port is not None:
            probe = port_open("127.0.0.1", self.port)
        if probe is not None and not run_to_end(until_ready(probe, timeout, self.exited)):
            raise RuntimeError(f"{self.name} did not start: see {self.log_file}")
        return self

    def stop(self, kill: bool = False) -> None:
        if self.popen is not None:
            terminate(self.popen, timeout=15, kill=kill)
        self.popen = None
