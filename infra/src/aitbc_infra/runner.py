"""`aitbc-up` (`just up`): the whole system on one machine, in the foreground, until Ctrl-C.

nats-server (JetStream, data in .data/nats; skipped when NATS_URL names an existing server),
then the keys service, the usage service, the sample Coordinator and the edge: the system
that aitbc_infra.stack defines. Ctrl-C or SIGTERM stops them in reverse order and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from aitbc_infra import stack
from aitbc_infra.bus_tls import BusTls
from aitbc_infra.nats_server import port_is_open
from aitbc_infra.stack import ConfigError, Layout
from aitbc_infra.supervisor import Service, Supervisor
from aitbc_runtime.bus_access import BusAccess


@dataclass(frozen=True)
class Config:
    layout: Layout
    ready_timeout: float = 30.0
    stop_timeout: float = 10.0
    only: frozenset[str] | None = None  # UP_SERVICES: start just these

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        only = {name.strip() for name in env.get("UP_SERVICES", "").split(",") if name.strip()}
        layout = Layout.from_env(env)
        try:
            return cls(
                layout=layout,
                ready_timeout=float(env.get("READY_TIMEOUT", "30")),
                stop_timeout=float(env.get("STOP_TIMEOUT", "10")),
                only=frozenset(only) or None,
            )
        except ValueError as exc:
            raise ConfigError(f"bad setting: {exc}") from exc


def services(config: Config) -> list[Service]:
    """Everything `just up` runs, in the order it starts (it stops in reverse)."""
    table = stack.services(config.layout)
    if config.only is not None:
        unknown = config.only - set(stack.DEFINITIONS)
        if unknown:
            raise ConfigError(f"UP_SERVICES names unknown services: {', '.join(sorted(unknown))}")
        table = [s for s in table if s.name in config.only]
    return table


def preflight(config: Config, table: list[Service]) -> None:
    """Refuse to start anything when a port we need is taken: say which, and what to do."""
    layout = config.layout
    names = {s.name for s in table}
    ports = [
        ("nats", "127.0.0.1", layout.nats_port, "NATS_PORT (or NATS_URL to use that server)"),
        ("coordinator", layout.coordinator_host, layout.coordinator_port, "COORDINATOR_PORT"),
        ("api", layout.api_host, layout.api_port, "API_PORT"),
        ("api", "127.0.0.1", layout.api_metrics_port, "API_METRICS_PORT (its /metrics)"),
    ]
    for name, host, port, setting in ports:
        if name in names and port and port_is_open(port, host):
            raise ConfigError(
                f"port {port} on {host} is already in use, so {name} cannot start "
                f"(is `just up` already running?). Set {setting} to use another."
            )
    if "nats" in names and layout.nats_replicas > 1:
        raise ConfigError(
            f"NATS_REPLICAS={layout.nats_replicas} needs a cluster, and `just up`'s own "
            "nats-server is one node: set NATS_URL to the cluster's servers, or NATS_REPLICAS=1"
        )
    if layout.nats_url is not None:
        if not any(_answers(server) for server in BusAccess(layout.nats_url).servers):
            raise ConfigError(f"NATS_URL={layout.nats_url} does not answer: is that server up?")
        tls = layout.bus_tls
        if tls is not None and not tls.ca.ca_file.exists():
            raise ConfigError(f"NATS_TLS is on but there is no CA at {tls.ca.ca_file}")
    layout.data_dir.mkdir(parents=True, exist_ok=True)


def _answers(server: str) -> bool:
    """Whether a server of NATS_URL (`nats://host:port`, or `host:port` as nats-py takes it
    too) accepts connections."""
    parts = urlsplit(server if "://" in server else f"nats://{server}")
    return port_is_open(parts.port or 4222, parts.hostname or "127.0.0.1")


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
    if config.layout.nats_url is not None:
        supervisor.say(f"using the NATS server at {config.layout.nats_url}")
    supervisor.say(f"data in {config.layout.data_dir}")
    if config.layout.credentials is not None:
        supervisor.say(
            f"the bus requires credentials: one per role in {config.layout.creds_dir} "
            "(the `aitbc` CLI uses admin.nk there; auditor.nk can only read)"
        )
    tls = config.layout.bus_tls
    if tls is not None:
        say_tls(supervisor, tls)
    return await supervisor.run(stop)


def say_tls(supervisor: Supervisor, tls: BusTls) -> None:
    """Where a client of the bus (the `aitbc` CLI) finds what TLS asks of it."""
    admin = tls.env("admin")
    mutual = " (mutual TLS)" if tls.verify else ""
    settings = " ".join(f"{name}={value}" for name, value in admin.items())
    supervisor.say(f"the bus speaks TLS only{mutual}: the CLI needs {settings}")


def settings(argv: list[str], env: Mapping[str, str]) -> dict[str, str]:
    """The environment with the command line's switches over it: `--tls` is NATS_TLS=1,
    `--mtls` NATS_TLS_VERIFY=1 (mutual TLS: every client presents its role's certificate)."""
    parser = argparse.ArgumentParser(prog="aitbc-up", description=__doc__.split("\n")[0])
    parser.add_argument("--tls", action="store_true", help="TLS only on the bus (NATS_TLS=1)")
    parser.add_argument("--mtls", action="store_true", help="mutual TLS (NATS_TLS_VERIFY=1)")
    switches = parser.parse_args(argv)
    chosen = {"NATS_TLS": switches.tls or switches.mtls, "NATS_TLS_VERIFY": switches.mtls}
    return {**env, **{name: "1" for name, on in chosen.items() if on}}


def main(argv: list[str] | None = None) -> int:
    env = settings(sys.argv[1:] if argv is None else argv, os.environ)
    try:
        config = Config.from_env(env)
        table = services(config)
        preflight(config, table)
    except ConfigError as exc:
        print(f"aitbc-up: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(supervise(table, config))


if __name__ == "__main__":
    sys.exit(main())
