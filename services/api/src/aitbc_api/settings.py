"""Edge configuration from the environment, read once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    nats_url: str = "nats://127.0.0.1:4322"
    host: str = "127.0.0.1"
    port: int = 8000
    upstream_url: str = "http://127.0.0.1:8011"
    public_routes: tuple[str, ...] = ("/v1/health",)
    upstream_connect_timeout: float = 2.0
    upstream_timeout: float = 30.0  # read/write: a slow upstream answers 504 after this
    keys_timeout: float = 2.0  # a keys-service request that takes longer answers 503
    auth_cache_size: int = 200_000
    auth_cache_ttl: float = 300.0  # seconds; events keep entries true, the TTL bounds a missed one
    negative_cache_size: int = 10_000
    negative_cache_ttl: float = 5.0
    max_body_bytes: int = 10 * 1024 * 1024
    log_level: str = "INFO"

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            nats_url=env.get("NATS_URL", cls.nats_url),
            host=env.get("API_HOST", cls.host),
            port=int(env.get("API_PORT", cls.port)),
            upstream_url=env.get("UPSTREAM_URL", cls.upstream_url).rstrip("/"),
            public_routes=_list(env.get("PUBLIC_ROUTES", ",".join(cls.public_routes))),
            upstream_connect_timeout=float(
                env.get("UPSTREAM_CONNECT_TIMEOUT", cls.upstream_connect_timeout)
            ),
            upstream_timeout=float(env.get("UPSTREAM_TIMEOUT", cls.upstream_timeout)),
            keys_timeout=float(env.get("KEYS_TIMEOUT", cls.keys_timeout)),
            auth_cache_size=int(env.get("AUTH_CACHE_SIZE", cls.auth_cache_size)),
            auth_cache_ttl=float(env.get("AUTH_CACHE_TTL", cls.auth_cache_ttl)),
            max_body_bytes=int(env.get("MAX_BODY_BYTES", cls.max_body_bytes)),
            log_level=env.get("LOG_LEVEL", cls.log_level),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
