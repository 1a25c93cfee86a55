"""Edge configuration from the environment, read once: the gate's settings
(aitbc_gate.settings), and what serving, forwarding and the dashboard add."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from aitbc_gate.settings import GateSettings, one_of

STANDARD_KEY_USAGE = ("account", "own", "none")


@dataclass(frozen=True)
class Settings(GateSettings):
    OWN_ROUTE_WORDS: ClassVar[tuple[str, ...]] = (  # every word of the edge's /v1 routes
        "account", "accounts", "api-keys", "events", "regenerate", "usage"
    )  # fmt: skip

    host: str = "127.0.0.1"
    port: int = 8000
    upstream_url: str = "http://127.0.0.1:8011"
    # GET/HEAD/OPTIONS go upstream while their decision is taken, for an account whose last
    # decision left headroom; a refused one's answer is thrown away. Off: always decide first.
    speculative_forwarding: bool = True
    upstream_connect_timeout: float = 2.0
    upstream_timeout: float = 30.0  # 504 past it: the answer's whole head, each body read
    # Seconds an idle upstream connection is kept for the next request: shorter than the
    # upstream's own keep-alive timeout (uvicorn's default is 5 s), so that no request goes out
    # on a connection the upstream is closing, which only an idempotent one may be sent again.
    upstream_keepalive: float = 4.0
    usage_query_timeout: float = 2.0  # a usage query (GET /v1/usage, the dashboard's charts and
    # the keys' last use) that takes longer answers 503 (the last use: shown as unknown)
    max_body_bytes: int = 10 * 1024 * 1024
    max_header_bytes: int = 64 * 1024  # request line and headers; beyond: 431
    header_timeout: float = 10.0  # seconds for a request's headers to arrive; beyond: 408
    body_timeout: float = 60.0  # seconds for a whole request body to arrive; beyond: 408
    max_connections: int = 4096  # open client connections per edge process; beyond: 503
    workers: int = 1  # edge processes on the one port (aitbc_api.workers), each an edge
    tls_cert_file: str = ""  # with tls_key_file: the edge serves HTTPS itself
    tls_key_file: str = ""
    require_https: bool = False  # refuse plain HTTP (behind a trusted proxy: what it says counts)
    log_level: str = "INFO"
    dashboard_session_idle: float = 30 * 60.0  # seconds without a request before a session ends
    dashboard_session_lifetime: float = 12 * 3600.0  # seconds after sign-in, whatever happens
    dashboard_max_sessions: int = 100_000  # all edges share them; beyond, sign-in answers 503
    dashboard_secure_cookies: bool = False  # always Secure; otherwise Secure on HTTPS requests
    # Hostile clients: cookies, the operators' listener, HSTS, budgets
    max_cookie_bytes: int = 8 * 1024  # the Cookie header(s) the dashboard reads; beyond: 431
    metrics_host: str = "127.0.0.1"  # the operators' listener: /metrics, never on the public port
    metrics_port: int = 0  # 0: no metrics listener
    hsts_max_age: int = 365 * 24 * 3600  # Strict-Transport-Security on HTTPS answers; 0: none
    # Budgets of attempts; beyond, 429 with Retry-After. One per address is each edge's (a
    # client spread over N edges: N times it); an overall one is the whole system's, each edge
    # admitting its share (aitbc_gate.throttle). Together the two overall ones bound the
    # sessions all edges make in a session lifetime: (20 + 100) a minute * 720 minutes =
    # 86,400, under dashboard_max_sessions.
    signup_per_address_per_hour: int = 10
    signup_global_per_minute: int = 20
    signin_per_address_per_minute: int = 10  # dashboard sign-in attempts, right or wrong
    signin_global_per_minute: int = 100
    dashboard_sessions_per_account: int = 10  # beyond, a new sign-in ends the oldest session
    # The secret the edge signs each forwarded caller's identity with (a file, mode 0600, read
    # once at start); "": no X-AITBC-Identity header is sent (aitbc_contracts.identity)
    upstream_identity_secret_file: str = ""
    # What GET /v1/usage shows a standard key: "account" (the whole account's), "own" (its own
    # requests only) or "none" (403).
    standard_key_usage: str = "account"

    VARIABLES: ClassVar[Mapping[str, str]] = {
        **GateSettings.VARIABLES,
        "host": "API_HOST",
        "port": "API_PORT",
        "speculative_forwarding": "SPECULATIVE_FORWARDING",
        "upstream_connect_timeout": "UPSTREAM_CONNECT_TIMEOUT",
        "upstream_timeout": "UPSTREAM_TIMEOUT",
        "upstream_keepalive": "UPSTREAM_KEEPALIVE",
        "usage_query_timeout": "USAGE_QUERY_TIMEOUT",
        "max_body_bytes": "MAX_BODY_BYTES",
        "max_header_bytes": "MAX_HEADER_BYTES",
        "header_timeout": "HEADER_TIMEOUT",
        "body_timeout": "BODY_TIMEOUT",
        "max_connections": "MAX_CONNECTIONS",
        "workers": "API_WORKERS",
        "tls_cert_file": "TLS_CERT_FILE",
        "tls_key_file": "TLS_KEY_FILE",
        "require_https": "REQUIRE_HTTPS",
        "log_level": "LOG_LEVEL",
        "dashboard_session_idle": "DASHBOARD_SESSION_IDLE",
        "dashboard_session_lifetime": "DASHBOARD_SESSION_LIFETIME",
        "dashboard_max_sessions": "DASHBOARD_MAX_SESSIONS",
        "dashboard_secure_cookies": "DASHBOARD_SECURE_COOKIES",
        "max_cookie_bytes": "MAX_COOKIE_BYTES",
        "metrics_host": "API_METRICS_HOST",
        "metrics_port": "API_METRICS_PORT",
        "hsts_max_age": "HSTS_MAX_AGE",
        "signup_per_address_per_hour": "SIGNUP_PER_ADDRESS_PER_HOUR",
        "signup_global_per_minute": "SIGNUP_GLOBAL_PER_MINUTE",
        "signin_per_address_per_minute": "SIGNIN_PER_ADDRESS_PER_MINUTE",
        "signin_global_per_minute": "SIGNIN_GLOBAL_PER_MINUTE",
        "dashboard_sessions_per_account": "DASHBOARD_SESSIONS_PER_ACCOUNT",
        "upstream_identity_secret_file": "UPSTREAM_IDENTITY_SECRET_FILE",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.workers < 1:
            raise ValueError(f"API_WORKERS must be 1 or more: {self.workers}")
        if not self.upstream_keepalive >= 0:
            raise ValueError(f"UPSTREAM_KEEPALIVE must be 0 or more: {self.upstream_keepalive}")

    @classmethod
    def fields_from(cls, env: Mapping[str, str]) -> dict[str, Any]:
        return {
            **super().fields_from(env),
            "upstream_url": env.get("UPSTREAM_URL", cls.upstream_url).rstrip("/"),
            "standard_key_usage": one_of(
                env, "STANDARD_KEY_USAGE", STANDARD_KEY_USAGE, cls.standard_key_usage
            ),
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
