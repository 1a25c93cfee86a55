"""Edge configuration from the environment, read once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aitbc_contracts.usage import DEFAULT_PLAN_LIMITS, plan_limits_from_env
from aitbc_runtime.bus_access import BusAccess


def _flag(value: str | None, default: bool = False) -> bool:
    """An on/off setting: 1/true/yes/on or 0/false/no/off; unset or anything else: `default`."""
    word = (value or "").strip().lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off"}:
        return False
    return default


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


# The words of the Coordinator's routes that usage events name routes with (the sample
# Coordinator's); any other path segment is recorded as {id} (aitbc_api.pipeline.usage_events).
DEFAULT_ROUTE_WORDS = ("health", "jobs", "results")
STANDARD_KEY_USAGE = ("account", "own", "none")


def _one_of(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}: {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    nats: BusAccess = field(default_factory=BusAccess)  # by default `just up`'s, unauthenticated
    host: str = "127.0.0.1"
    port: int = 8000
    upstream_url: str = "http://127.0.0.1:8011"
    public_routes: tuple[str, ...] = ("/v1/health",)
    # GET/HEAD/OPTIONS go upstream while their decision is taken, for an account whose last
    # decision left headroom; a refused one's answer is thrown away. Off: always decide first.
    speculative_forwarding: bool = True
    upstream_connect_timeout: float = 2.0
    upstream_timeout: float = 30.0  # read/write: a slow upstream answers 504 after this
    keys_timeout: float = 2.0  # a key check or key command that takes longer answers 503
    usage_query_timeout: float = 2.0  # a usage query (GET /v1/usage, the dashboard's charts and
    # the keys' last use) that takes longer answers 503 (the last use: shown as unknown)
    auth_cache_size: int = 200_000
    auth_cache_ttl: float = 300.0  # seconds; events keep entries true, the TTL bounds a missed one
    negative_cache_size: int = 10_000
    negative_cache_ttl: float = 5.0
    auth_failure_budget: int = 30  # invalid keys an address may present a minute
    max_body_bytes: int = 10 * 1024 * 1024
    max_header_bytes: int = 64 * 1024  # request line and headers; beyond: 431
    header_timeout: float = 10.0  # seconds for a request's headers to arrive; beyond: 408
    body_timeout: float = 60.0  # seconds for a whole request body to arrive; beyond: 408
    max_connections: int = 4096  # open client connections per edge process; beyond: 503
    usage_timeout: float = 0.5  # a decision that takes longer falls back to the fail policy
    # Far from an account's limit, its decision lends this edge up to this many more requests,
    # admitted without asking (aitbc_api.pipeline.leases). 0: every request is decided on its own.
    rate_limit_lease: int = 32
    fail_open: bool = True  # usage service unreachable: admit (local limiter) or answer 503
    usage_buffer: int = 100_000  # usage events held while NATS is away; beyond: counted drops
    # A folder of this edge's own: usage events are journaled there until stored, so that a
    # killed edge's are sent by its next start (aitbc_api.pipeline.usage_spool). "": none.
    usage_spool_dir: str = ""
    plan_limits: tuple[tuple[str, int], ...] = tuple(DEFAULT_PLAN_LIMITS.items())
    tls_cert_file: str = ""  # with tls_key_file: the edge serves HTTPS itself
    tls_key_file: str = ""
    require_https: bool = False  # refuse plain HTTP (behind a trusted proxy: what it says counts)
    log_level: str = "INFO"
    dashboard_session_idle: float = 30 * 60.0  # seconds without a request before a session ends
    dashboard_session_lifetime: float = 12 * 3600.0  # seconds after sign-in, whatever happens
    dashboard_max_sessions: int = 100_000  # all edges share them; beyond, sign-in answers 503
    dashboard_secure_cookies: bool = False  # always Secure; otherwise Secure on HTTPS requests
    # Outages. Seconds a cached key may be served unchecked once the key event stream is out of
    # reach (and after a reconnect that could not resume it), while the keys service cannot
    # answer either; beyond, 503 until it can.
    auth_stale_max: float = 30.0
    # Hostile clients: cookies, the operators' listener, proxies, HSTS, budgets
    max_cookie_bytes: int = 8 * 1024  # the Cookie header(s) the dashboard reads; beyond: 431
    metrics_host: str = "127.0.0.1"  # the operators' listener: /metrics, never on the public port
    metrics_port: int = 0  # 0: no metrics listener
    # Proxies whose X-Forwarded-For/-Proto (or Forwarded) are believed: CIDRs; none by default
    trusted_proxies: str = ""
    trusted_proxy_headers: str = "x-forwarded"  # or "forwarded" (RFC 7239): what they write
    hsts_max_age: int = 365 * 24 * 3600  # Strict-Transport-Security on HTTPS answers; 0: none
    # Budgets per edge process (N edges: N times each); beyond, 429 with Retry-After. Together
    # the two overall ones bound the sessions one edge can make in a session lifetime:
    # (20 + 100) a minute * 720 minutes = 86,400, under dashboard_max_sessions.
    signup_per_address_per_hour: int = 10
    signup_global_per_minute: int = 20
    signin_per_address_per_minute: int = 10  # dashboard sign-in attempts, right or wrong
    signin_global_per_minute: int = 100
    dashboard_sessions_per_account: int = 10  # beyond, a new sign-in ends the oldest session
    # Forwarding, credentials and the upstream's identity, usage route names:
    api_key_in_query: bool = True  # off: a key in the `api_key` query parameter is refused
    # The secret the edge signs each forwarded caller's identity with (a file, mode 0600, read
    # once at start); "": no X-AITBC-Identity header is sent (aitbc_contracts.identity)
    upstream_identity_secret_file: str = ""
    usage_route_words: tuple[str, ...] = DEFAULT_ROUTE_WORDS
    # What keys may call and read: master keys on the forwarded /v1/... routes (off: they only
    # manage keys, whatever each account says), and what GET /v1/usage shows a standard key:
    # "account" (the whole account's), "own" (its own requests only) or "none" (403).
    master_key_data_plane: bool = True
    standard_key_usage: str = "account"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from `env`, the process's environment unless given (read at the call:
        a default of os.environ would be bound at import, and miss a replaced one)."""
        env = os.environ if env is None else env
        plain: dict[str, Any] = {
            name: _read(env, variable, getattr(cls, name)) for name, variable in _VARIABLES.items()
        }
        return cls(
            nats=BusAccess.from_env(env),  # as `just up` places it, with this role's credentials
            upstream_url=env.get("UPSTREAM_URL", cls.upstream_url).rstrip("/"),
            fail_open=env.get("USAGE_FAIL_MODE", "open").strip().lower() != "closed",
            plan_limits=tuple(plan_limits_from_env(env).items()),
            standard_key_usage=_one_of(
                env, "STANDARD_KEY_USAGE", STANDARD_KEY_USAGE, cls.standard_key_usage
            ),
            **plain,
        )


# The settings read as they are, each from its variable, as its default's type: a number, a
# word, an on/off flag (`_flag`) or a comma-separated list (`_list`). The others, which need
# more than that, are read in `Settings.from_env`.
_VARIABLES = {
    "host": "API_HOST",
    "port": "API_PORT",
    "public_routes": "PUBLIC_ROUTES",
    "speculative_forwarding": "SPECULATIVE_FORWARDING",
    "upstream_connect_timeout": "UPSTREAM_CONNECT_TIMEOUT",
    "upstream_timeout": "UPSTREAM_TIMEOUT",
    "keys_timeout": "KEYS_TIMEOUT",
    "usage_query_timeout": "USAGE_QUERY_TIMEOUT",
    "auth_cache_size": "AUTH_CACHE_SIZE",
    "auth_cache_ttl": "AUTH_CACHE_TTL",
    "auth_failure_budget": "AUTH_FAILURE_BUDGET",
    "max_body_bytes": "MAX_BODY_BYTES",
    "max_header_bytes": "MAX_HEADER_BYTES",
    "header_timeout": "HEADER_TIMEOUT",
    "body_timeout": "BODY_TIMEOUT",
    "max_connections": "MAX_CONNECTIONS",
    "usage_timeout": "USAGE_TIMEOUT",
    "rate_limit_lease": "RATE_LIMIT_LEASE",
    "usage_buffer": "USAGE_BUFFER",
    "usage_spool_dir": "USAGE_SPOOL_DIR",
    "tls_cert_file": "TLS_CERT_FILE",
    "tls_key_file": "TLS_KEY_FILE",
    "require_https": "REQUIRE_HTTPS",
    "log_level": "LOG_LEVEL",
    "dashboard_session_idle": "DASHBOARD_SESSION_IDLE",
    "dashboard_session_lifetime": "DASHBOARD_SESSION_LIFETIME",
    "dashboard_max_sessions": "DASHBOARD_MAX_SESSIONS",
    "dashboard_secure_cookies": "DASHBOARD_SECURE_COOKIES",
    "auth_stale_max": "AUTH_STALE_MAX",
    "max_cookie_bytes": "MAX_COOKIE_BYTES",
    "metrics_host": "API_METRICS_HOST",
    "metrics_port": "API_METRICS_PORT",
    "trusted_proxies": "TRUSTED_PROXIES",
    "trusted_proxy_headers": "TRUSTED_PROXY_HEADERS",
    "hsts_max_age": "HSTS_MAX_AGE",
    "signup_per_address_per_hour": "SIGNUP_PER_ADDRESS_PER_HOUR",
    "signup_global_per_minute": "SIGNUP_GLOBAL_PER_MINUTE",
    "signin_per_address_per_minute": "SIGNIN_PER_ADDRESS_PER_MINUTE",
    "signin_global_per_minute": "SIGNIN_GLOBAL_PER_MINUTE",
    "dashboard_sessions_per_account": "DASHBOARD_SESSIONS_PER_ACCOUNT",
    "api_key_in_query": "API_KEY_IN_QUERY",
    "upstream_identity_secret_file": "UPSTREAM_IDENTITY_SECRET_FILE",
    "usage_route_words": "USAGE_ROUTE_WORDS",
    "master_key_data_plane": "MASTER_KEY_DATA_PLANE",
}


def _read(env: Mapping[str, str], variable: str, default: Any) -> Any:
    """The variable's value as the default's type; unset: the default."""
    value = env.get(variable)
    if value is None:
        return default
    if isinstance(default, bool):
        return _flag(value, default)
    if isinstance(default, tuple):
        return _list(value)
    return type(default)(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
