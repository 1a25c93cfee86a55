"""`aitbc-up` (`just up`): the whole system on one machine, in the foreground, until Ctrl-C.

nats-server (JetStream, data in .data/nats; skipped when NATS_URL names an existing server),
then the keys service, the sample Coordinator and the edge. The list of services is the
table in `services()`: adding one is adding a line there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import nats

from aitbc_contracts.messages import CheckKeys, encoder
from aitbc_contracts.subjects import KEYS_CHECK, USAGE_QUERY
from aitbc_contracts.usage import LastUsedQuery
from aitbc_infra.nats_server import NatsServer, port_is_open
from aitbc_infra.supervisor import Ready, Service, Supervisor


class ConfigError(Exception):
    """Something to fix before anything starts: a busy port, a missing program."""


@dataclass(frozen=True)
class Config:
    data_dir: Path
    nats_url: str | None  # an existing server to use; None: start one on nats_port
    nats_port: int = 4322  # not 4222: a developer's own NATS may well be there
    database_url: str = ""
    usage_database_url: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    coordinator_host: str = "127.0.0.1"
    coordinator_port: int = 8011
    ready_timeout: float = 30.0
    stop_timeout: float = 10.0
    only: frozenset[str] | None = None  # UP_SERVICES: start just these

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        data_dir = Path(env.get("DATA_DIR", ".data")).resolve()
        only = {name.strip() for name in env.get("UP_SERVICES", "").split(",") if name.strip()}
        try:
            return cls(
                data_dir=data_dir,
                nats_url=env.get("NATS_URL") or None,
                nats_port=int(env.get("NATS_PORT", "4322")),
                database_url=env.get("DATABASE_URL", f"sqlite+aiosqlite:///{data_dir}/keys.db"),
                usage_database_url=env.get(
                    "USAGE_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir}/usage.db"
                ),
                api_host=env.get("API_HOST", "127.0.0.1"),
                api_port=int(env.get("API_PORT", "8000")),
                coordinator_host=env.get("COORDINATOR_HOST", "127.0.0.1"),
                coordinator_port=int(env.get("COORDINATOR_PORT", "8011")),
                ready_timeout=float(env.get("READY_TIMEOUT", "30")),
                stop_timeout=float(env.get("STOP_TIMEOUT", "10")),
                only=frozenset(only) or None,
            )
        except ValueError as exc:
            raise ConfigError(f"bad setting: {exc}") from exc

    @property
    def bus_url(self) -> str:
        return self.nats_url or f"nats://127.0.0.1:{self.nats_port}"

    @property
    def upstream_url(self) -> str:
        return f"http://{self.coordinator_host}:{self.coordinator_port}"

    def child_env(self) -> dict[str, str]:
        """What every service is told: where the bus, the database and its neighbours are."""
        return {
            "NATS_URL": self.bus_url,
            "DATABASE_URL": self.database_url,
            "USAGE_DATABASE_URL": self.usage_database_url,
            "API_HOST": self.api_host,
            "API_PORT": str(self.api_port),
            "UPSTREAM_URL": self.upstream_url,
            "COORDINATOR_HOST": self.coordinator_host,
            "COORDINATOR_PORT": str(self.coordinator_port),
            "PYTHONUNBUFFERED": "1",  # lines as they happen, not when a buffer fills
        }


def program(name: str) -> str:
    """A console script of this environment (beside the interpreter), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} is not installed: run `uv sync` first")
    return found


def port_open(host: str, port: int) -> Ready:
    async def ready() -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return ready


def responds(nats_url: str, subject: str, payload: bytes) -> Ready:
    """Ready once something answers a request on `subject` (any answer: it is listening)."""

    async def ready() -> bool:
        nc = await nats.connect(
            [url.strip() for url in nats_url.split(",")],
            connect_timeout=1,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            error_cb=_quiet,
        )
        try:
            await nc.request(subject, payload, timeout=1.0)
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    return ready


async def _quiet(_: Exception) -> None:
    """nats-py logs each failed attempt with a traceback; the runner reports a timeout instead."""


def services(config: Config) -> list[Service]:
    """Everything `just up` runs, in the order it starts (it stops in reverse)."""
    env, bus = config.child_env(), config.bus_url
    coordinator, api = config.coordinator_port, config.api_port
    ping_keys = encoder.encode(CheckKeys([]))  # any answer will do
    ping_usage = encoder.encode(LastUsedQuery(account_id="acc_ready"))
    table: list[Service] = []
    if config.nats_url is None:
        nats_server = NatsServer(config.nats_port, config.data_dir / "nats")
        nats_ready = port_open("127.0.0.1", config.nats_port)
        table.append(Service("nats", nats_server.command(), {}, nats_ready, address=bus))
    # name, program, environment, readiness check, where it serves
    table += [
        Service("keys", [program("aitbc-keys")], env, responds(bus, KEYS_CHECK, ping_keys)),
        Service("usage", [program("aitbc-usage")], env, responds(bus, USAGE_QUERY, ping_usage)),
        Service("coordinator", [program("aitbc-sample-coordinator")], env,
                port_open(config.coordinator_host, coordinator),
                address=f"{config.upstream_url} (sample)"),
        Service("api", [program("aitbc-api")], env, port_open(config.api_host, api),
                address=f"http://{config.api_host}:{api}"),
    ]  # fmt: skip
    if config.only is not None:
        unknown = config.only - {s.name for s in table} - {"nats"}
        if unknown:
            raise ConfigError(f"UP_SERVICES names unknown services: {', '.join(sorted(unknown))}")
        table = [s for s in table if s.name in config.only]
    return table


def preflight(config: Config, table: list[Service]) -> None:
    """Refuse to start anything when a port we need is taken: say which, and what to do."""
    names = {s.name for s in table}
    ports = [
        ("nats", "127.0.0.1", config.nats_port, "NATS_PORT (or NATS_URL to use that server)"),
        ("coordinator", config.coordinator_host, config.coordinator_port, "COORDINATOR_PORT"),
        ("api", config.api_host, config.api_port, "API_PORT"),
    ]
    for name, host, port, setting in ports:
        if name in names and port_is_open(port, host):
            raise ConfigError(
                f"port {port} on {host} is already in use, so {name} cannot start "
                f"(is `just up` already running?). Set {setting} to use another."
            )
    if config.nats_url is not None:
        parts = urlsplit(config.nats_url.split(",")[0])
        if not port_is_open(parts.port or 4222, parts.hostname or "127.0.0.1"):
            raise ConfigError(f"NATS_URL={config.nats_url} does not answer: is that server up?")
    config.data_dir.mkdir(parents=True, exist_ok=True)


async def supervise(table: list[Service], config: Config) -> int:
    supervisor = Supervisor(
        table, ready_timeout=config.ready_timeout, stop_timeout=config.stop_timeout
    )
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            supervisor.say("stopping at once")
            supervisor.kill_all()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    if config.nats_url is not None:
        supervisor.say(f"using the NATS server at {config.nats_url}")
    supervisor.say(f"data in {config.data_dir}")
    return await supervisor.run(stop)


def main() -> int:
    try:
        config = Config.from_env(os.environ)
        table = services(config)
        preflight(config, table)
    except ConfigError as exc:
        print(f"aitbc-up: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(supervise(table, config))


if __name__ == "__main__":
    sys.exit(main())
