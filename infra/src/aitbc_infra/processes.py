"""Child processes of a test or benchmark stack: a service on a free port, its output in a log
file, started until its port accepts connections, stopped with SIGTERM (then SIGKILL)."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import nats

from aitbc_infra.nats_server import port_is_open, terminate
from aitbc_runtime.bus import until_answered


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
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
        """Until its port accepts connections (at once for a process without a port)."""
        assert self.popen is not None
        if self.port is not None:
            deadline = time.monotonic() + timeout
            while not port_is_open(self.port):
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start: see {self.log_file}")
                time.sleep(0.05)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.popen is not None:
            terminate(self.popen, timeout=15, kill=kill)
        self.popen = None


async def answered(nats_url: str, subject: str, payload: bytes, within: float = 60.0) -> None:
    """Until a service answers a request on `subject` at `nats_url`: it is listening."""
    nc = await nats.connect(nats_url)
    try:
        await until_answered(nc, subject, payload, within)
    finally:
        await nc.close()
