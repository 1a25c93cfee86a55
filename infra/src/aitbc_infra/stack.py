"""The whole system, defined once: which services there are, in which order they start, their
commands, environments, ports, data paths and readiness.

`just up` (aitbc_infra.runner) runs this definition in the foreground; the end-to-end tests,
the chaos suite and the benchmarks run it as child processes on free ports with a data folder
of their own (`Layout.on_free_ports`). Adding a service is adding a function to `DEFINITIONS`.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from aitbc_contracts.identity import new_secret
from aitbc_contracts.messages import CheckKeys, encoder
from aitbc_contracts.subjects import KEYS_CHECK, USAGE_QUERY
from aitbc_contracts.usage import LastUsedQuery
from aitbc_infra.bus_config import BusCredentials, write_private
from aitbc_infra.bus_tls import BusTls
from aitbc_infra.dev_ca import DevCA
from aitbc_infra.nats_server import NatsServer, free_port
from aitbc_infra.readiness import answers, http_ok, port_open
from aitbc_infra.supervisor import Service
from aitbc_runtime import environment
from aitbc_runtime.bus_access import BusAccess, TlsFields

DEFAULT_NATS_PORT = environment.DEFAULT_NATS_PORT
DEFAULT_API_PORT = 8000
DEFAULT_API_METRICS_PORT = 8001  # the edge's /metrics, on 127.0.0.1 only
DEFAULT_COORDINATOR_PORT = 8011
HEALTH_PATH = "/v1/health"  # the edge forwards it to the Coordinator: both serve once it is 200

# Requests that any running keys or usage service answers: they say "it is listening".
PING_KEYS = encoder.encode(CheckKeys([]))
PING_USAGE = encoder.encode(LastUsedQuery(account_id="acc_ready"))


class ConfigError(Exception):
    """Something to fix before anything starts: a busy port, a missing program, a bad number."""


@dataclass(frozen=True)
class Layout:
    """Where one whole system lives: its data folder, its databases, its ports, and settings
    every service is given on top (`env`). Empty database URLs are SQLite files in `data_dir`."""

    data_dir: Path
    nats_url: str | None = None  # an existing server to use; None: start one on nats_port
    nats_port: int = DEFAULT_NATS_PORT
    nats_replicas: int = 1  # of every stream and bucket: 3 on a 3-node cluster
    database_url: str = ""
    usage_database_url: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    api_metrics_port: int = DEFAULT_API_METRICS_PORT
    coordinator_host: str = "127.0.0.1"
    coordinator_port: int = DEFAULT_COORDINATOR_PORT
    creds_dir: Path | None = None  # the roles' NATS credentials; None: DATA_DIR/creds
    nats_tls: bool = False  # TLS only on the bus, with the development CA in tls_dir
    nats_tls_verify: bool = False  # mutual TLS: every client presents its role's certificate
    tls_dir: Path | None = None  # the development CA and its certificates; None: DATA_DIR/tls
    tls_hosts: tuple[str, ...] = ()  # the server certificate's names besides the local ones
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for attribute, file in (("database_url", "keys.db"), ("usage_database_url", "usage.db")):
            if not getattr(self, attribute):
                object.__setattr__(self, attribute, f"sqlite+aiosqlite:///{self.data_dir / file}")
        if self.creds_dir is None:
            object.__setattr__(self, "creds_dir", self.data_dir / "creds")
        if self.tls_dir is None:
            object.__setattr__(self, "tls_dir", self.data_dir / "tls")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Layout:
        """`just up`'s settings: DATA_DIR, NATS_URL or NATS_PORT, NATS_REPLICAS, DATABASE_URL,
        USAGE_DATABASE_URL, API_HOST, API_PORT, API_METRICS_PORT, COORDINATOR_HOST,
        COORDINATOR_PORT, NATS_CREDS_DIR, NATS_TLS, NATS_TLS_VERIFY, NATS_TLS_DIR,
        NATS_TLS_HOSTS."""
        try:
            return cls(
                data_dir=environment.data_dir(env),
                nats_url=env.get("NATS_URL") or None,  # set: use it, start no nats-server
                nats_port=environment.nats_port(env),
                nats_replicas=environment.nats_replicas(env),
                database_url=environment.keys_database_url(env),
                usage_database_url=environment.usage_database_url(env),
                api_host=env.get("API_HOST", "127.0.0.1"),
                api_port=int(env.get("API_PORT", DEFAULT_API_PORT)),
                api_metrics_port=int(env.get("API_METRICS_PORT", DEFAULT_API_METRICS_PORT)),
                coordinator_host=env.get("COORDINATOR_HOST", "127.0.0.1"),
                coordinator_port=int(env.get("COORDINATOR_PORT", DEFAULT_COORDINATOR_PORT)),
                creds_dir=_folder(env, "NATS_CREDS_DIR"),
                **tls_switches(env),
                tls_dir=_folder(env, "NATS_TLS_DIR"),
                tls_hosts=tuple(
                    h.strip() for h in env.get("NATS_TLS_HOSTS", "").split(",") if h.strip()
                ),
            )
        except ValueError as exc:
            raise ConfigError(f"bad setting: {exc}") from exc

    @classmethod
    def on_free_ports(cls, data_dir: Path, **settings: object) -> Layout:
        """A system of a test's or a benchmark's own: free ports, everything in `data_dir`."""
        ports = {
            "nats_port": free_port(),
            "api_port": free_port(),
            "api_metrics_port": free_port(),
            "coordinator_port": free_port(),
        }
        return cls(data_dir=data_dir, **{**ports, **settings})  # type: ignore[arg-type]

    @property
    def bus_url(self) -> str:
        scheme = "tls" if self.nats_tls else "nats"
        return self.nats_url or f"{scheme}://127.0.0.1:{self.nats_port}"

    @property
    def upstream_url(self) -> str:
        return f"http://{self.coordinator_host}:{self.coordinator_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def credentials(self) -> BusCredentials | None:
        """The roles' credentials: `just up`'s own server requires them (they are made on its
        first start); an existing server (NATS_URL) gets them where NATS_CREDS_DIR has them."""
        assert self.creds_dir is not None
        if self.nats_url is None or self.creds_dir.is_dir():
            return BusCredentials(self.creds_dir)
        return None

    @property
    def bus_tls(self) -> BusTls | None:
        """TLS on the bus (NATS_TLS), with the development CA in `tls_dir` (`just up`'s own
        server makes it on its first start; an existing server must use its certificates)."""
        if not self.nats_tls:
            return None
        assert self.tls_dir is not None
        return BusTls(DevCA(self.tls_dir, self.tls_hosts), verify=self.nats_tls_verify)

    def access(self, role: str) -> BusAccess:
        """How a process of `role` reaches this system's bus."""
        credentials, tls = self.credentials, self.bus_tls
        fields: TlsFields = {} if tls is None else tls.client(role)
        if credentials is None:
            return BusAccess(self.bus_url, **fields)
        return credentials.access(role, self.bus_url, **fields)

    @property
    def identity_secret_file(self) -> Path:
        """The secret the edges and the Coordinator share to sign and check each forwarded
        request's identity (aitbc_contracts.identity)."""
        return self.data_dir / "upstream-identity.secret"

    def identity_env(self) -> dict[str, str]:
        """UPSTREAM_IDENTITY_SECRET_FILE, for the edges and the Coordinator; the secret is made
        (mode 0600) the first time, and kept: edges and a Coordinator restarted one at a time
        keep agreeing. Delete the file to change it (and restart both sides)."""
        file = self.identity_secret_file
        if not file.exists():
            write_private(file, new_secret() + "\n")
        return {"UPSTREAM_IDENTITY_SECRET_FILE": str(file)}

    def role_env(self, role: str) -> dict[str, str]:
        """The credentials and TLS settings of a process of `role`: the keys service has two
        credentials (its event publisher is a role of its own, with the same certificate) and
        its checkpoint signing key; the operators' CLI the checkpoints' public key."""
        credentials, tls = self.credentials, self.bus_tls
        env = {} if tls is None else tls.env(role)
        if credentials is None:
            return env
        env["NATS_CREDS"] = str(credentials.file(role))
        if role == "keys":
            env["NATS_WRITER_CREDS"] = str(credentials.file("keys-writer"))
            if credentials.checkpoint_key.exists():
                env["KEYS_CHECKPOINT_KEY_FILE"] = str(credentials.checkpoint_key)
        if role in ("admin", "auditor") and credentials.checkpoint_public_key.exists():
            env["KEYS_CHECKPOINT_PUBLIC_KEY"] = str(credentials.checkpoint_public_key)
        return env

    def child_env(self, role: str = "admin") -> dict[str, str]:
        """What every service is told: where the bus, the databases and its neighbours are,
        and the credentials of its bus role."""
        return {
            **self.role_env(role),
            "DATA_DIR": str(self.data_dir),
            "NATS_URL": self.bus_url,
            "NATS_REPLICAS": str(self.nats_replicas),
            "DATABASE_URL": self.database_url,
            "USAGE_DATABASE_URL": self.usage_database_url,
            "API_HOST": self.api_host,
            "API_PORT": str(self.api_port),
            "UPSTREAM_URL": self.upstream_url,
            "COORDINATOR_HOST": self.coordinator_host,
            "COORDINATOR_PORT": str(self.coordinator_port),
            "PYTHONUNBUFFERED": "1",  # lines as they happen, not when a buffer fills
            **self.env,
        }


class TlsSwitches(TypedDict):
    nats_tls: bool
    nats_tls_verify: bool


def tls_switches(env: Mapping[str, str]) -> TlsSwitches:
    """NATS_TLS and NATS_TLS_VERIFY (which implies TLS) as Layout's fields."""
    verify = environment.flag(env, "NATS_TLS_VERIFY")
    return {"nats_tls": verify or environment.flag(env, "NATS_TLS"), "nats_tls_verify": verify}


def _folder(env: Mapping[str, str], name: str) -> Path | None:
    return Path(env[name]).resolve() if env.get(name) else None


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
    return Service("keys", [program("aitbc-keys")], layout.child_env("keys"), ready)


def usage(layout: Layout) -> Service:
    ready = answers(layout.access("admin"), USAGE_QUERY, PING_USAGE)
    return Service("usage", [program("aitbc-usage")], layout.child_env("usage"), ready)


def coordinator(layout: Layout) -> Service:
    ready = http_ok(layout.upstream_url + HEALTH_PATH)
    address = f"{layout.upstream_url} (sample)"
    argv = [program("aitbc-sample-coordinator")]
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
        **env,
    }
    if _health_answers_plainly(layout, {**os.environ, **settings}):
        ready = http_ok(url + HEALTH_PATH)
    else:
        ready = port_open(layout.api_host, port)
    metrics = metrics_url(settings)
    address = f"{url} (metrics, this machine only: {metrics})" if metrics else url
    return Service(name, [program("aitbc-api")], settings, ready, address, port)


def metrics_url(edge_env: Mapping[str, str]) -> str:
    """Where an edge told `edge_env` serves /metrics ("" when it does not)."""
    port = int(edge_env.get("API_METRICS_PORT") or 0)
    host = edge_env.get("API_METRICS_HOST", "127.0.0.1")
    return f"http://{host}:{port}/metrics" if port else ""


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
