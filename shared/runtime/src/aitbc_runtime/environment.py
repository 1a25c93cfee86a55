"""Where the pieces every process shares are, read from the environment as `just up` sets it:
the NATS server, the data folder and the services' databases.

The runner, the services and the operator CLI all derive them here, so that a changed
NATS_PORT or DATA_DIR reaches each of them alike. A variable set but empty counts as unset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_NATS_PORT = 4322  # not 4222: a developer's own NATS may well be there
DEFAULT_DATA_DIR = ".data"


def nats_port(env: Mapping[str, str] = os.environ) -> int:
    """NATS_PORT: the port of the nats-server `just up` starts (and the others then reach)."""
    value = env.get("NATS_PORT") or str(DEFAULT_NATS_PORT)
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"NATS_PORT is not a port number: {value!r}") from None


def nats_url(env: Mapping[str, str] = os.environ) -> str:
    """NATS_URL when set (an existing server, or a cluster's: a comma-separated list of
    servers, any of which will do), else the local one on NATS_PORT."""
    return env.get("NATS_URL") or f"nats://127.0.0.1:{nats_port(env)}"


MAX_REPLICAS = 5  # JetStream's most


def nats_replicas(env: Mapping[str, str] = os.environ) -> int:
    """NATS_REPLICAS: how many nodes keep a copy of each stream and KV bucket [1; 3 in a
    3-node cluster, so that losing any one node loses nothing]."""
    value = env.get("NATS_REPLICAS") or "1"
    try:
        replicas = int(value)
    except ValueError:
        replicas = 0
    if not 1 <= replicas <= MAX_REPLICAS:
        raise ValueError(f"NATS_REPLICAS must be a number from 1 to {MAX_REPLICAS}: {value!r}")
    return replicas


def data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """DATA_DIR, absolute: where the SQLite databases and the nats-server's JetStream live."""
    return Path(env.get("DATA_DIR") or DEFAULT_DATA_DIR).resolve()


def keys_database_url(env: Mapping[str, str] = os.environ) -> str:
    """The keys service's database: DATABASE_URL, else keys.db in DATA_DIR."""
    return env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir(env)}/keys.db"


def usage_database_url(env: Mapping[str, str] = os.environ) -> str:
    """The usage service's database: USAGE_DATABASE_URL, else usage.db in DATA_DIR."""
    return env.get("USAGE_DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir(env)}/usage.db"


def flag(env: Mapping[str, str], name: str) -> bool:
    """An on/off setting: on when 1, true, yes or on (any case); off when unset or else."""
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
