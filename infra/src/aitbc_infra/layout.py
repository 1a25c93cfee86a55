"""Where one whole system lives: its data folder, databases, ports, bus credentials and TLS,
and what each of its processes is told (`Layout`). aitbc_infra.stack defines the processes on
a layout; `just up` reads one from the environment, the tests and benchmarks make one on free
ports, `just cluster` (aitbc_infra.cluster) one whose NATS_URL lists three nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from aitbc_contracts.identity import new_secret
from aitbc_infra.bus_config import BusCredentials, write_private
from aitbc_infra.bus_tls import BusTls
from aitbc_infra.dev_ca import DevCA
from aitbc_infra.nats_server import free_port
from aitbc_runtime import environment
from aitbc_runtime.bus_access import BusAccess, TlsFields

DEFAULT_NATS_PORT = environment.DEFAULT_NATS_PORT
DEFAULT_API_PORT = 8000
DEFAULT_API_METRICS_PORT = 8001  # the edge's /metrics, on 127.0.0.1 only
DEFAULT_KEYS_METRICS_PORT = 8002  # the keys service's
DEFAULT_USAGE_METRICS_PORT = 8003  # the usage service's
DEFAULT_COORDINATOR_PORT = 8011


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
    keys_metrics_port: int = DEFAULT_KEYS_METRICS_PORT
    usage_metrics_port: int = DEFAULT_USAGE_METRICS_PORT
    coordinator_host: str = "127.0.0.1"
    coordinator_port: int = DEFAULT_COORDINATOR_PORT
    coordinator_gate: bool = False  # the sample Coordinator runs the gate in process
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
        USAGE_DATABASE_URL, API_HOST, API_PORT, API_METRICS_PORT, KEYS_METRICS_PORT,
        USAGE_METRICS_PORT, COORDINATOR_HOST, COORDINATOR_PORT, COORDINATOR_GATE,
        NATS_CREDS_DIR, NATS_TLS, NATS_TLS_VERIFY, NATS_TLS_DIR, NATS_TLS_HOSTS."""
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
                keys_metrics_port=int(env.get("KEYS_METRICS_PORT", DEFAULT_KEYS_METRICS_PORT)),
                usage_metrics_port=int(env.get("USAGE_METRICS_PORT", DEFAULT_USAGE_METRICS_PORT)),
                coordinator_host=env.get("COORDINATOR_HOST", "127.0.0.1"),
                coordinator_port=int(env.get("COORDINATOR_PORT", DEFAULT_COORDINATOR_PORT)),
                coordinator_gate=environment.flag(env, "COORDINATOR_GATE"),
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
            "keys_metrics_port": free_port(),
            "usage_metrics_port": free_port(),
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

    def access(self, role: str, url: str | None = None) -> BusAccess:
        """How a process of `role` reaches this system's bus (or the servers of it in `url`)."""
        credentials, tls = self.credentials, self.bus_tls
        fields: TlsFields = {} if tls is None else tls.client(role)
        url = url or self.bus_url
        if credentials is None:
            return BusAccess(url, **fields)
        return credentials.access(role, url, **fields)

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
