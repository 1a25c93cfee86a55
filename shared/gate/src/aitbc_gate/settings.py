"""The gate's configuration from the environment, read once: the same variables wherever the
gate runs (the edge, whose settings add their own: aitbc_api.settings, or an app's middleware)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Self

from aitbc_contracts.usage import DEFAULT_PLAN_LIMITS, plan_limits_from_env
from aitbc_runtime.bus_access import BusAccess

if TYPE_CHECKING:
    from aitbc_gate.scope_rules import ScopeRules

# The words of the upstream's routes that usage events name routes with (the sample
# Coordinator's); any other path segment is recorded as {id} (aitbc_gate.usage_events).
DEFAULT_ROUTE_WORDS = ("health", "jobs", "results")
# The scope each route needs, for keys restricted to scopes (syntax: aitbc_gate.scope_rules).
DEFAULT_SCOPE_RULES = (
    "GET /v1/jobs=jobs:read; GET /v1/jobs/*=jobs:read; "
    "POST /v1/jobs=jobs:write; * /v1/jobs/*=jobs:write; "
    "GET /v1/usage*=usage:read; * /v1/api-keys*=keys:manage"
)


def flag(value: str | None, default: bool = False) -> bool:
    """An on/off setting: 1/true/yes/on or 0/false/no/off; unset or anything else: `default`."""
    word = (value or "").strip().lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off"}:
        return False
    return default


def one_of(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}: {value!r}")
    return value


def read(env: Mapping[str, str], variable: str, default: Any) -> Any:
    """The variable's value as the default's type: a number, a word, an on/off flag or a
    comma-separated list; unset: the default."""
    value = env.get(variable)
    if value is None:
        return default
    if isinstance(default, bool):
        return flag(value, default)
    if isinstance(default, tuple):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    try:
        return type(default)(value)
    except ValueError:  # int()'s own message names neither the variable nor what it wants
        what = "a whole number" if isinstance(default, int) else "a number"
        raise ValueError(f"{variable} must be {what}: {value!r}") from None


class PublicPaths:
    """Paths that need no key: the routes named, and every path under one ending in `*` but
    those with a `.` or `..` segment: `/docs/../v1/jobs` starts with `/docs/`, and names
    `/v1/jobs` to an app or a proxy that resolves it."""

    __slots__ = ("exact", "prefixes")

    def __init__(self, routes: tuple[str, ...]) -> None:
        self.exact = frozenset(r for r in routes if not r.endswith("*"))
        self.prefixes = tuple(r[:-1] for r in routes if r.endswith("*"))

    def __contains__(self, path: str) -> bool:
        if path in self.exact:
            return True
        if not self.prefixes or not path.startswith(self.prefixes):
            return False
        return "/." not in path or not {".", ".."} & set(path.split("/"))


@dataclass(frozen=True)
class GateSettings:
    nats: BusAccess = field(default_factory=BusAccess)  # by default `just up`'s, unauthenticated
    nats_wait: float = 60.0  # seconds a start waits for NATS before it fails
    # Paths that need no key (an entry ending in `*`: every path it starts)
    public_routes: tuple[str, ...] = ("/v1/health",)
    keys_timeout: float = 2.0  # a key check or key command that takes longer answers 503
    auth_cache_size: int = 200_000
    auth_cache_ttl: float = 300.0  # seconds; events keep entries true, the TTL bounds a missed one
    negative_cache_size: int = 10_000
    negative_cache_ttl: float = 5.0
    auth_failure_budget: int = 30  # invalid keys an address may present a minute
    usage_timeout: float = 0.5  # a decision that takes longer falls back to the fail policy
    # Far from an account's limit, its decision lends this process up to this many more
    # requests, admitted without asking (aitbc_gate.leases). 0: every request is decided alone.
    rate_limit_lease: int = 32
    fail_open: bool = True  # usage service unreachable: admit (local limiter) or answer 503
    usage_buffer: int = 100_000  # usage events held while NATS is away; beyond: counted drops
    # A folder of this process's own: usage events are journaled there until stored, so that a
    # killed process's are sent by its next start (aitbc_gate.usage_spool). "": none.
    usage_spool_dir: str = ""
    plan_limits: tuple[tuple[str, int], ...] = tuple(DEFAULT_PLAN_LIMITS.items())
    # A plans file (aitbc_contracts.plans), reloaded when it changes: when set, its plans
    # replace plan_limits. "": none.
    plans_file: str = ""
    # Outages. Seconds a cached key may be served unchecked once the key event stream is out of
    # reach (and after a reconnect that could not resume it), while the keys service cannot
    # answer either; beyond, 503 until it can.
    auth_stale_max: float = 30.0
    # Proxies whose X-Forwarded-For/-Proto (or Forwarded) are believed: CIDRs; none by default
    trusted_proxies: str = ""
    trusted_proxy_headers: str = "x-forwarded"  # or "forwarded" (RFC 7239): what they write
    api_key_in_query: bool = True  # off: a key in the `api_key` query parameter is refused
    usage_route_words: tuple[str, ...] = DEFAULT_ROUTE_WORDS
    # Master keys on the data plane (off: they only manage keys, whatever each account says)
    master_key_data_plane: bool = True
    # METHOD PATH=SCOPE entries: the scope a key restricted to scopes needs for each route
    scope_rules: str = DEFAULT_SCOPE_RULES

    # The settings read as they are, each from its variable, as its default's type (`read`).
    # The others, which need more than that, are read in `fields_from`.
    VARIABLES: ClassVar[Mapping[str, str]] = {
        "nats_wait": "NATS_WAIT",
        "public_routes": "PUBLIC_ROUTES",
        "keys_timeout": "KEYS_TIMEOUT",
        "auth_cache_size": "AUTH_CACHE_SIZE",
        "auth_cache_ttl": "AUTH_CACHE_TTL",
        "auth_failure_budget": "AUTH_FAILURE_BUDGET",
        "usage_timeout": "USAGE_TIMEOUT",
        "rate_limit_lease": "RATE_LIMIT_LEASE",
        "usage_buffer": "USAGE_BUFFER",
        "usage_spool_dir": "USAGE_SPOOL_DIR",
        "plans_file": "PLANS_FILE",
        "auth_stale_max": "AUTH_STALE_MAX",
        "trusted_proxies": "TRUSTED_PROXIES",
        "trusted_proxy_headers": "TRUSTED_PROXY_HEADERS",
        "api_key_in_query": "API_KEY_IN_QUERY",
        "usage_route_words": "USAGE_ROUTE_WORDS",
        "master_key_data_plane": "MASTER_KEY_DATA_PLANE",
        "scope_rules": "SCOPE_RULES",
    }

    # Words of routes the app serves itself, named in usage events and scope refusals whatever
    # USAGE_ROUTE_WORDS says (the edge's /v1/account is not /v1/{id})
    OWN_ROUTE_WORDS: ClassVar[tuple[str, ...]] = ()

    @property
    def route_words(self) -> tuple[str, ...]:
        return self.usage_route_words + self.OWN_ROUTE_WORDS

    @cached_property
    def public_paths(self) -> PublicPaths:
        return PublicPaths(self.public_routes)

    def __post_init__(self) -> None:
        self.scopes_needed  # noqa: B018 (a SCOPE_RULES mistake stops the start, not a request)

    @cached_property
    def scopes_needed(self) -> ScopeRules:
        """SCOPE_RULES, parsed (ValueError, naming the entry, for one that is not a rule)."""
        from aitbc_gate.scope_rules import ScopeRules  # it names routes as usage events do

        return ScopeRules(self.scope_rules, self.route_words)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings from `env`, the process's environment unless given (read at the call:
        a default of os.environ would be bound at import, and miss a replaced one)."""
        return cls(**cls.fields_from(os.environ if env is None else env))

    @classmethod
    def fields_from(cls, env: Mapping[str, str]) -> dict[str, Any]:
        variables = cls.VARIABLES.items()
        plain = {name: read(env, variable, getattr(cls, name)) for name, variable in variables}
        return {
            "nats": BusAccess.from_env(env),  # as `just up` places it, with this role's credentials
            "fail_open": env.get("USAGE_FAIL_MODE", "open").strip().lower() != "closed",
            "plan_limits": tuple(plan_limits_from_env(env).items()),
            **plain,
        }
