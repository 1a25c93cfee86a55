"""Usage service configuration from the environment, read once through `get_settings()`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

from aitbc_contracts.subjects import USAGE_PARTITIONS
from aitbc_contracts.usage import DEFAULT_PLAN_LIMITS, plan_limits_from_env
from aitbc_runtime import environment
from aitbc_runtime.bus_access import BusAccess
from aitbc_runtime.metrics import LOCAL, listener_address


def parse_partitions(value: str) -> tuple[int, ...]:
    """ "all", or a list like "0-3,8": the partitions this process may hold (it shares them
    with the other usage processes by leases)."""
    if value.strip() in ("", "all"):
        return tuple(range(USAGE_PARTITIONS))
    owned: set[int] = set()
    for part in value.split(","):
        low, _, high = part.strip().partition("-")
        owned.update(range(int(low), int(high or low) + 1))
    if not owned or min(owned) < 0 or max(owned) >= USAGE_PARTITIONS:
        raise ValueError(f"partitions must be within 0-{USAGE_PARTITIONS - 1}: {value!r}")
    return tuple(sorted(owned))


@dataclass(frozen=True)
class Settings:
    nats: BusAccess = field(default_factory=BusAccess)  # by default `just up`'s, unauthenticated
    database_url: str = "sqlite+aiosqlite:///.data/usage.db"
    plan_limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PLAN_LIMITS))
    # A plans file (aitbc_contracts.plans): when set, its plans replace plan_limits
    plans_file: str = ""
    partitions: tuple[int, ...] = tuple(range(USAGE_PARTITIONS))
    keys_timeout: float = 2.0
    # A holder silent this long loses its partitions to the others (takeover after a crash
    # takes about this long); it stops deciding itself after 3/4 of it.
    lease_seconds: float = 2.0
    snapshot_interval: float = 0.2  # counters are saved this often: bounds a crash's over-admission
    aggregate_batch: int = 4000  # events a commit of the aggregates takes at most
    # ...and how long it gathers them: per-minute figures a second late, and each key's row
    # written once a second rather than five times (half the service's CPU under load)
    aggregate_interval: float = 1.0
    log_level: str = "INFO"
    # The operators' listener (/metrics: aitbc_usage.metrics), never on a public address.
    metrics_host: str = LOCAL
    metrics_port: int = 0  # 0: no metrics listener

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        metrics_host, metrics_port = listener_address(env, "USAGE")
        return cls(
            nats=BusAccess.from_env(env),  # as `just up` places it, with this role's credentials
            database_url=environment.usage_database_url(env),
            plan_limits=plan_limits_from_env(),
            plans_file=env.get("PLANS_FILE", "").strip(),
            partitions=parse_partitions(env.get("USAGE_PARTITIONS", "all")),
            keys_timeout=float(env.get("KEYS_TIMEOUT", cls.keys_timeout)),
            lease_seconds=float(env.get("USAGE_LEASE_SECONDS", cls.lease_seconds)),
            snapshot_interval=float(env.get("USAGE_SNAPSHOT_INTERVAL", cls.snapshot_interval)),
            aggregate_interval=float(env.get("USAGE_AGGREGATE_INTERVAL", cls.aggregate_interval)),
            log_level=env.get("LOG_LEVEL", cls.log_level).upper(),
            metrics_host=metrics_host,
            metrics_port=metrics_port,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
