"""Edge configuration from the environment, read once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

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
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            nats=BusAccess.from_env(env),  # as `just up` places it, with this role's credentials
            host=env.get("API_HOST", cls.host),
            port=int(env.get("API_PORT", cls.port)),
            upstream_url=env.get("UPSTREAM_URL", cls.upstream_url).rstrip("/"),
            public_routes=_list(env.get("PUBLIC_ROUTES", ",".join(cls.public_routes))),
            speculative_forwarding=_flag(env.get("SPECULATIVE_FORWARDING"), default=True),
            upstream_connect_timeout=float(
                env.get("UPSTREAM_CONNECT_TIMEOUT", cls.upstream_connect_timeout)
            ),
            upstream_timeout=float(env.get("UPSTREAM_TIMEOUT", cls.upstream_timeout)),
            keys_timeout=float(env.get("KEYS_TIMEOUT", cls.keys_timeout)),
            usage_query_timeout=float(env.get("USAGE_QUERY_TIMEOUT", cls.usage_query_timeout)),
            auth_cache_size=int(env.get("AUTH_CACHE_SIZE", cls.auth_cache_size)),
            auth_cache_ttl=float(env.get("AUTH_CACHE_TTL", cls.auth_cache_ttl)),
            auth_failure_budget=int(env.get("AUTH_FAILURE_BUDGET", cls.auth_failure_budget)),
            max_body_bytes=int(env.get("MAX_BODY_BYTES", cls.max_body_bytes)),
            max_header_bytes=int(env.get("MAX_HEADER_BYTES", cls.max_header_bytes)),
            header_timeout=float(env.get("HEADER_TIMEOUT", cls.header_timeout)),
            body_timeout=float(env.get("BODY_TIMEOUT", cls.body_timeout)),
            max_connections=int(env.get("MAX_CONNECTIONS", cls.max_connections)),
            usage_timeout=float(env.get("USAGE_TIMEOUT", cls.usage_timeout)),
            rate_limit_lease=int(env.get("RATE_LIMIT_LEASE", cls.rate_limit_lease)),
            fail_open=env.get("USAGE_FAIL_MODE", "open").strip().lower() != "closed",
            usage_buffer=int(env.get("USAGE_BUFFER", cls.usage_buffer)),
            plan_limits=tuple(plan_limits_from_env().items()),
            tls_cert_file=env.get("TLS_CERT_FILE", ""),
            tls_key_file=env.get("TLS_KEY_FILE", ""),
            require_https=_flag(env.get("REQUIRE_HTTPS")),
            log_level=env.get("LOG_LEVEL", cls.log_level),
            dashboard_session_idle=float(
                env.get("DASHBOARD_SESSION_IDLE", cls.dashboard_session_idle)
            ),
            dashboard_session_lifetime=float(
                env.get("DASHBOARD_SESSION_LIFETIME", cls.dashboard_session_lifetime)
            ),
            dashboard_max_sessions=int(
                env.get("DASHBOARD_MAX_SESSIONS", cls.dashboard_max_sessions)
            ),
            dashboard_secure_cookies=_flag(env.get("DASHBOARD_SECURE_COOKIES")),
            # Outages
            auth_stale_max=float(env.get("AUTH_STALE_MAX", cls.auth_stale_max)),
            max_cookie_bytes=int(env.get("MAX_COOKIE_BYTES", cls.max_cookie_bytes)),
            metrics_host=env.get("API_METRICS_HOST", cls.metrics_host),
            metrics_port=int(env.get("API_METRICS_PORT", cls.metrics_port)),
            trusted_proxies=env.get("TRUSTED_PROXIES", cls.trusted_proxies),
            trusted_proxy_headers=env.get("TRUSTED_PROXY_HEADERS", cls.trusted_proxy_headers),
            hsts_max_age=int(env.get("HSTS_MAX_AGE", cls.hsts_max_age)),
            signup_per_address_per_hour=int(
                env.get("SIGNUP_PER_ADDRESS_PER_HOUR", cls.signup_per_address_per_hour)
            ),
            signup_global_per_minute=int(
                env.get("SIGNUP_GLOBAL_PER_MINUTE", cls.signup_global_per_minute)
            ),
            signin_per_address_per_minute=int(
                env.get("SIGNIN_PER_ADDRESS_PER_MINUTE", cls.signin_per_address_per_minute)
            ),
            signin_global_per_minute=int(
                env.get("SIGNIN_GLOBAL_PER_MINUTE", cls.signin_global_per_minute)
            ),
            dashboard_sessions_per_account=int(
                env.get("DASHBOARD_SESSIONS_PER_ACCOUNT", cls.dashboard_sessions_per_account)
            ),
            api_key_in_query=_flag(env.get("API_KEY_IN_QUERY"), default=True),
            upstream_identity_secret_file=env.get("UPSTREAM_IDENTITY_SECRET_FILE", ""),
            usage_route_words=_list(env.get("USAGE_ROUTE_WORDS", ",".join(DEFAULT_ROUTE_WORDS))),
            master_key_data_plane=_flag(env.get("MASTER_KEY_DATA_PLANE"), default=True),
            standard_key_usage=_one_of(
                env, "STANDARD_KEY_USAGE", STANDARD_KEY_USAGE, cls.standard_key_usage
            ),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
