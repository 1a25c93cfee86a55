"""Keys service configuration from the environment, read once through `get_settings()`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from aitbc_contracts.checkpoints import EVERY_EVENTS, EVERY_SECONDS
from aitbc_keys.domain import MAX_KEYS_PER_ACCOUNT
from aitbc_runtime import environment
from aitbc_runtime.bus_access import BusAccess
from aitbc_runtime.checkpoint_keys import every_events, positive
from aitbc_runtime.metrics import LOCAL, listener_address
from aitbc_runtime.sql import normalise_database_url, sqlite_path

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///.data/keys.db"
LEASE_SECONDS = 2.0
MIN_LEASE_SECONDS = 0.2


@dataclass(frozen=True)
class Settings:
    nats: BusAccess = field(default_factory=BusAccess)  # answers checks and commands
    # Publishes the key event stream and the checkpoints: a user of its own, so that no
    # answer the service sends (to a reply subject a requester names) can land on the stream.
    nats_writer: BusAccess | None = None  # None: the same as `nats`
    database_url: str = DEFAULT_DATABASE_URL
    log_level: str = "INFO"
    # Signed checkpoints of the key event log (aitbc_keys.checkpoints): the Ed25519 signing
    # key's file (an operator nkey seed, mode 0600; "": no checkpoints), and their cadence.
    checkpoint_key_file: str = ""
    checkpoint_every_events: int = EVERY_EVENTS
    checkpoint_every_seconds: float = EVERY_SECONDS
    # Live keys (neither revoked nor expired) an account may hold, its master key included;
    # one more is refused with TOO_MANY_KEYS.
    max_keys_per_account: int = MAX_KEYS_PER_ACCOUNT
    # The lease on the outbox relay (aitbc_keys.writing): how long a keys process that stopped
    # beating keeps it from the others. A SIGKILLed holder's relay moves within about this.
    lease_seconds: float = LEASE_SECONDS
    # The operators' listener (/metrics: aitbc_keys.metrics), never on a public address.
    metrics_host: str = LOCAL
    metrics_port: int = 0  # 0: no metrics listener

    def __post_init__(self) -> None:
        # Normalise here so that tests constructing Settings directly get the same treatment.
        object.__setattr__(self, "database_url", normalise_database_url(self.database_url))

    @property
    def writer(self) -> BusAccess:
        return self.nats_writer or self.nats

    def ensure_data_dir(self) -> None:
        """Create the folder of a SQLite file: SQLite creates the file, not its parents."""
        path = sqlite_path(self.database_url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        metrics_host, metrics_port = listener_address(env, "KEYS")
        return cls(
            nats=BusAccess.from_env(env),  # as `just up` places it
            nats_writer=BusAccess.from_env(env, creds="NATS_WRITER_CREDS")
            if env.get("NATS_WRITER_CREDS")
            else None,
            database_url=environment.keys_database_url(env),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            checkpoint_key_file=env.get("KEYS_CHECKPOINT_KEY_FILE", ""),
            checkpoint_every_events=int(every_events(env)),
            checkpoint_every_seconds=positive(env, "KEYS_CHECKPOINT_EVERY_SECONDS", EVERY_SECONDS),
            max_keys_per_account=_at_least_one(env, "MAX_KEYS_PER_ACCOUNT", MAX_KEYS_PER_ACCOUNT),
            lease_seconds=_lease_seconds(env),
            metrics_host=metrics_host,
            metrics_port=metrics_port,
        )


def _at_least_one(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name) or str(default)
    if not value.isdecimal() or int(value) < 1:
        raise ValueError(f"{name} must be a whole number of 1 or more: {value!r}")
    return int(value)


def _lease_seconds(env: Mapping[str, str]) -> float:
    """KEYS_LEASE_SECONDS: the holder beats five times a lease, so a lease far shorter than the
    bus's round trips would only make the relay move back and forth."""
    seconds = positive(env, "KEYS_LEASE_SECONDS", LEASE_SECONDS)
    if seconds < MIN_LEASE_SECONDS:
        raise ValueError(f"KEYS_LEASE_SECONDS must be {MIN_LEASE_SECONDS} or more: {seconds!r}")
    return seconds


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    settings = Settings.from_env()
    settings.ensure_data_dir()
    return settings
