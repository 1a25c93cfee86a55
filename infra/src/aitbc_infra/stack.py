"""The whole system, defined once: which services there are, in which order they start, their
commands, environments, ports and readiness, on a `Layout` (aitbc_infra.layout: where the
data, databases, ports and credentials are).

`just up` (aitbc_infra.runner) runs this definition in the foreground; the end-to-end tests,
the chaos suite and the benchmarks run it as child processes on free ports with a data folder
of their own (`Layout.on_free_ports`); `just cluster` (aitbc_infra.cluster) runs each service
of it twice on a 3-node NATS cluster. Adding a service is adding a function to `DEFINITIONS`.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from aitbc_contracts.messages import CheckKeys, encoder
from aitbc_contracts.subjects import KEYS_CHECK, USAGE_QUERY
from aitbc_contracts.usage import LastUsedQuery
from aitbc_infra.layout import ConfigError as ConfigError  # the system's vocabulary, as before
from aitbc_infra.layout import Layout as Layout
from aitbc_infra.nats_server import NatsServer
from aitbc_infra.readiness import Probe, answers, http_ok, port_open
from aitbc_infra.supervisor import Service
from aitbc_runtime import environment

HEALTH_PATH = "/v1/health"  # the edge forwards it to the Coordinator: both serve once it is 200

# Requests that any running keys or usage service answers: they say "it is listening".
PING_KEYS = encoder.encode(CheckKeys([]))
PING_USAGE = encoder.encode(LastUsedQuery(account_id="acc_ready"))

# The prefix of each service's operators' listener settings: <PREFIX>_METRICS_PORT (0: none)
# and <PREFIX>_METRICS_HOST (127.0.0.1). Each service is told its own port; never a public one.
METRICS_SETTINGS = {"api": "API", "keys": "KEYS", "usage": "USAGE"}


def program(name: str) -> str:
    """A console script of this environment (beside the interpreter), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} is not installed: run `uv sync` first")
    return found


def nats(layout: Layout) -> Service:
    server = NatsServer(
        layout.nats_port,
        layout.data_dir / "nats",
        credentials=layout.credentials,
        tls=layout.bus_tls,
    )
    return Service("nats", server.command(), {}, server.ready(), layout.bus_url, layout.nats_port)


def keys(layout: Layout) -> Service:
    ready = answers(layout.access("admin"), KEYS_CHECK, PING_KEYS)
    return on_the_bus(layout, "keys", ready, layout.keys_metrics_port)


def usage(layout: Layout) -> Service:
    ready = answers(layout.access("admin"), USAGE_QUERY, PING_USAGE)
    return on_the_bus(layout, "usage", ready, layout.usage_metrics_port)


def on_the_bus(layout: Layout, name: str, ready: Probe, metrics_port: int) -> Service:
    """The keys or the usage service (`name`): NATS only, and its /metrics on `metrics_port`
    (0: none), on 127.0.0.1."""
    env = {**layout.child_env(name), f"{METRICS_SETTINGS[name]}_METRICS_PORT": str(metrics_port)}
    address = with_metrics("NATS only", metrics_url(env, name))
    return Service(name, [program(f"aitbc-{name}")], env, ready, address)


def another(service: Service, name: str, metrics_port: int) -> Service:
    """One more process of the keys or the usage `service`, called `name`, its /metrics on
    `metrics_port` (0: none): two processes cannot listen on one port."""
    setting = f"{METRICS_SETTINGS[service.name]}_METRICS_PORT"
    env = {**service.env, setting: str(metrics_port)}
    address = with_metrics("NATS only", metrics_url(env, service.name))
    return replace(service, name=name, env=env, address=address)


def coordinator(layout: Layout) -> Service:
    """The sample Coordinator; with `coordinator_gate`, with the gate in process: it needs a
    key of its own callers, and reaches the bus as an edge does (its role, its usage spool)."""
    ready = http_ok(layout.upstream_url + HEALTH_PATH)
    argv = [program("aitbc-sample-coordinator")]
    if layout.coordinator_gate:
        address = f"{layout.upstream_url} (sample, gated: API keys required)"
        env = {
            **layout.child_env("edge"),
            "COORDINATOR_GATE": "1",
            "USAGE_SPOOL_DIR": str(layout.data_dir / "coordinator.usage-spool"),
        }
    else:
        address = f"{layout.upstream_url} (sample)"
        env = {k: v for k, v in layout.child_env().items() if not k.startswith("NATS_")}  # no bus
    env = {**layout.identity_env(), **env}
    return Service("coordinator", argv, env, ready, address, layout.coordinator_port)


def api(layout: Layout) -> Service:
    return edge(layout, "api", layout.api_port, API_METRICS_PORT=str(layout.api_metrics_port))


def edge(layout: Layout, name: str, port: int, **env: str) -> Service:
    """An edge on `port`; `api` is the system's own, tests and benchmarks add more (`env`:
    settings over the layout's). Its /metrics listener is off unless `env` names a port
    (API_METRICS_PORT), on 127.0.0.1."""
    url = f"http://{layout.api_host}:{port}"
    settings = {
        **layout.identity_env(),
        **layout.child_env("edge"),
        "API_PORT": str(port),
        "API_METRICS_PORT": "0",
        "USAGE_SPOOL_DIR": str(layout.data_dir / f"{name}.usage-spool"),
        **env,
    }
    if _health_answers_plainly(layout, {**os.environ, **settings}):
        ready = http_ok(url + HEALTH_PATH)
    else:
        ready = port_open(layout.api_host, port)
    address = with_metrics(url, metrics_url(settings))
    return Service(name, [program("aitbc-api")], settings, ready, address, port)


def metrics_url(env: Mapping[str, str], service: str = "api") -> str:
    """Where a process of `service` (api, keys, usage) told `env` serves /metrics ("" when
    it does not)."""
    prefix = METRICS_SETTINGS[service]
    port = int(env.get(f"{prefix}_METRICS_PORT") or 0)
    host = env.get(f"{prefix}_METRICS_HOST", "127.0.0.1")
    return f"http://{host}:{port}/metrics" if port else ""


def with_metrics(where: str, metrics: str) -> str:
    """Where a process serves, and where its /metrics are (if anywhere), for people."""
    return f"{where} (metrics, this machine only: {metrics})" if metrics else where


def _health_answers_plainly(layout: Layout, seen: Mapping[str, str]) -> bool:
    """Whether an edge told `seen` answers a plain-HTTP /v1/health with 200 once it serves: it
    does in front of the layout's Coordinator, without TLS or REQUIRE_HTTPS. An edge in front
    of another upstream (which a test may keep down on purpose), or on HTTPS only, is ready
    as soon as its port accepts connections."""
    https_only = environment.flag(seen, "REQUIRE_HTTPS")
    tls = bool(seen.get("TLS_CERT_FILE"))
    return seen.get("UPSTREAM_URL") == layout.upstream_url and not tls and not https_only


# Every service, in the order it starts (it stops in reverse): each needs the ones before it.
DEFINITIONS: dict[str, Callable[[Layout], Service]] = {
    "nats": nats,
    "keys": keys,
    "usage": usage,
    "coordinator": coordinator,
    "api": api,
}


def service(layout: Layout, name: str) -> Service:
    return DEFINITIONS[name](layout)


def services(layout: Layout) -> list[Service]:
    """The whole system; without nats-server when the layout names an existing one."""
    names = [name for name in DEFINITIONS if name != "nats" or layout.nats_url is None]
    return [service(layout, name) for name in names]
