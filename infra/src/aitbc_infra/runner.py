"""`aitbc-up` (`just up`): the whole system on one machine, in the foreground, until Ctrl-C.

nats-server (JetStream, data in .data/nats; skipped when NATS_URL names an existing server),
then the keys service, the usage service, the sample Coordinator and the edge: the system
that aitbc_infra.stack defines. Ctrl-C or SIGTERM stops them in reverse order and exits 0.
`aitbc-cluster` (aitbc_infra.cluster) runs its table the same way (`supervise`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from aitbc_contracts.plans import PlansError, PlanTable, omitted
from aitbc_contracts.usage import plan_limits_from_env
from aitbc_infra import stack
from aitbc_infra.bus_tls import BusTls
from aitbc_infra.layout import ConfigError, Layout
from aitbc_infra.nats_server import port_is_open
from aitbc_infra.supervisor import Service, Supervisor
from aitbc_runtime.bus_access import BusAccess, without_secrets


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
        ("keys", "127.0.0.1", layout.keys_metrics_port, "KEYS_METRICS_PORT (its /metrics)"),
        ("usage", "127.0.0.1", layout.usage_metrics_port, "USAGE_METRICS_PORT (its /metrics)"),
    ]
    refuse_taken_ports([p for p in ports if p[0] in names])
    if "nats" in names and layout.nats_replicas > 1:
        raise ConfigError(
            f"NATS_REPLICAS={layout.nats_replicas} needs a cluster, and `just up`'s own "
            "nats-server is one node: set NATS_URL to the cluster's servers, or NATS_REPLICAS=1 "
            "(`just cluster` runs one on this machine)"
        )
    if layout.nats_url is not None:
        if not any(_answers(server) for server in BusAccess(layout.nats_url).servers):
            shown = without_secrets(layout.nats_url)
            raise ConfigError(f"NATS_URL={shown} does not answer: is that server up?")
        tls = layout.bus_tls
        if tls is not None and not tls.ca.ca_file.exists():
            raise ConfigError(f"NATS_TLS is on but there is no CA at {tls.ca.ca_file}")
    layout.data_dir.mkdir(parents=True, exist_ok=True)


def refuse_taken_ports(ports: list[tuple[str, str, int, str]]) -> None:
    """ConfigError for the first (service, host, port, setting) whose port something already
    listens on (0: none asked for)."""
    for name, host, port, setting in ports:
        if port and port_is_open(port, host):
            raise ConfigError(
                f"port {port} on {host} is already in use, so {name} cannot start "
                f"(is `just up` or `just cluster` already running?). Set {setting} to use another."
            )


def _answers(server: str) -> bool:
    """Whether a server of NATS_URL (`nats://host:port`, or `host:port` as nats-py takes it
    too) accepts connections."""
    parts = urlsplit(server if "://" in server else f"nats://{server}")
    return port_is_open(parts.port or 4222, parts.hostname or "127.0.0.1")


async def supervise(
    table: list[Service],
    config: Config,
    notes: Sequence[str] = (),
    summary: str = "",
    restart_after: float | None = None,
) -> int:
    """Run `table` in the foreground until Ctrl-C or SIGTERM (exit 0) or a death (1; with
    `restart_after`, the dead is started again instead): `notes` are said first, with where
    the data and the bus's credentials are; `summary` once everything is up."""
    supervisor = Supervisor(
        table,
        ready_timeout=config.ready_timeout,
        stop_timeout=config.stop_timeout,
        restart_after=restart_after,
    )
    layout = config.layout
    for note in notes:
        supervisor.say(note)
    supervisor.say(f"data in {layout.data_dir}")
    if layout.credentials is not None:
        supervisor.say(
            f"the bus requires credentials: one per role in {layout.creds_dir} "
            "(the `aitbc` CLI uses admin.nk there; auditor.nk can only read)"
        )
    tls = layout.bus_tls
    if tls is not None:
        say_tls(supervisor, tls)
    return await supervisor.run_in_foreground(summary)


def say_tls(supervisor: Supervisor, tls: BusTls) -> None:
    """Where a client of the bus (the `aitbc` CLI) finds what TLS asks of it."""
    admin = tls.env("admin")
    mutual = " (mutual TLS)" if tls.verify else ""
    settings = " ".join(f"{name}={value}" for name, value in admin.items())
    supervisor.say(f"the bus speaks TLS only{mutual}: the CLI needs {settings}")


def plans_note(env: Mapping[str, str]) -> str:
    """Which plans the usage service and the edge use: PLANS_FILE's (one that does not
    validate stops the start here, with what is wrong), else the defaults."""
    path = env.get("PLANS_FILE", "").strip()
    if not path:
        limits = ", ".join(f"{name} {limit}" for name, limit in plan_limits_from_env(env).items())
        changed = bool(env.get("PLAN_LIMITS", "").strip())
        source = "PLAN_LIMITS over the defaults" if changed else "the defaults"
        return (
            f"plans: {source} ({limits} requests a minute; PLAN_LIMITS changes them); "
            "PLANS_FILE=infra/plans.example.toml uses a file"
        )
    try:
        plans, defaults = PlanTable(path).plans, omitted(path)
    except PlansError as exc:
        raise ConfigError(f"PLANS_FILE: {exc}") from None
    names = ", ".join(sorted(set(plans) - set(defaults)))
    kept = f"; {', '.join(defaults)}: not in it, the default minute" if defaults else ""
    return f"plans from {path} ({names}{kept}): reloaded when it changes, or on SIGHUP"


def settings(
    argv: list[str], env: Mapping[str, str], prog: str = "aitbc-up", doc: str = __doc__ or ""
) -> dict[str, str]:
    """The environment with the command line's switches over it: `--tls` is NATS_TLS=1,
    `--mtls` NATS_TLS_VERIFY=1 (mutual TLS: every client presents its role's certificate)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0])
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
        plans = plans_note(env)
    except ConfigError as exc:
        print(f"aitbc-up: {exc}", file=sys.stderr)
        return 1
    url = config.layout.nats_url
    notes = [f"using the NATS server at {without_secrets(url)}"] if url is not None else []
    notes.append(plans)
    return asyncio.run(supervise(table, config, notes))


if __name__ == "__main__":
    sys.exit(main())
