"""What a key may do less of: its scopes and its IP allow-list, the one rule for the keys
service's decisions (what it accepts and keeps), the edge's bodies and the gate's checks.

- scopes: names like `jobs:read` (`resource:action`, lowercase), at most MAX_SCOPES, kept
  deduplicated and sorted. No scopes means what it meant before scopes existed: everything the
  key's kind may call. The gate maps each route to the scope it needs (SCOPE_RULES).
- allowed_ips: CIDRs, IPv4 or IPv6 (a bare address is a /32 or a /128), at most MAX_NETWORKS,
  kept in their normal text (`10.0.0.0/8`, host bits cleared), deduplicated, in order of
  family then address. None means from anywhere.

`allows` is on the gate's hot path for a key with an allow-list: its networks are parsed once
per allow-list, and its answer remembered per address. A key without restrictions never
reaches it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_SCOPES = 16
MAX_NETWORKS = 32
SCOPE_MAX = 64  # characters in one scope name
SCOPE_PATTERN = re.compile(r"[a-z][a-z0-9_.-]*:[a-z][a-z0-9_.-]*")

# The scopes the default SCOPE_RULES grant (aitbc_gate.scope_rules), as the dashboard offers
# them. Any name of the pattern is accepted: a deployment's own rules may grant others.
JOBS_READ = "jobs:read"
JOBS_WRITE = "jobs:write"
USAGE_READ = "usage:read"
KEYS_MANAGE = "keys:manage"  # a standard key that manages keys below its own scopes (a root key)
WELL_KNOWN_SCOPES = (JOBS_READ, JOBS_WRITE, USAGE_READ, KEYS_MANAGE)


class InvalidRestriction(ValueError):
    """A scope or network that is not one; its message says which and why (safe to show)."""


def scopes(values: Iterable[str]) -> tuple[str, ...]:
    """The scopes as they are kept: checked, deduplicated, sorted."""
    kept = set()
    for value in values:
        if not isinstance(value, str) or len(value) > SCOPE_MAX:
            raise InvalidRestriction(f"a scope is at most {SCOPE_MAX} characters")
        if SCOPE_PATTERN.fullmatch(value) is None:
            raise InvalidRestriction(
                f"scope {value[:SCOPE_MAX]!r} is not of the form resource:action "
                "(lowercase letters, digits, '_', '.', '-'), e.g. jobs:read"
            )
        kept.add(value)
    if len(kept) > MAX_SCOPES:
        raise InvalidRestriction(f"a key holds at most {MAX_SCOPES} scopes")
    return tuple(sorted(kept))


def network(value: str) -> Network:
    """One allow-list entry: a CIDR or an address, IPv4 or IPv6. An IPv6 zone (`fe80::1%eth0`)
    is refused: it names an interface of some host, not a network, and its text is anything of
    any length. An IPv4-mapped network is its IPv4 network (`::ffff:203.0.113.0/120` is
    `203.0.113.0/24`): `allows` checks a mapped client by its IPv4 address, which the IPv6
    network would never hold."""
    try:
        if "%" in value:
            raise ValueError(value)
        parsed = ipaddress.ip_network(value.strip(), strict=False)
    except (ValueError, TypeError, AttributeError):
        shown = value[:64] if isinstance(value, str) else type(value).__name__
        raise InvalidRestriction(
            f"allowed_ips: {shown!r} is not an IP address or CIDR network "
            "(e.g. 203.0.113.0/24 or 2001:db8::/32)"
        ) from None
    if isinstance(parsed, ipaddress.IPv6Network) and parsed.prefixlen >= 96:
        mapped = parsed.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, parsed.prefixlen - 96))
    return parsed


def allowed_ips(values: Iterable[str]) -> tuple[str, ...]:
    """The allow-list as it is kept: each network's normal text, deduplicated, ordered."""
    networks = {network(value) for value in values}
    if len(networks) > MAX_NETWORKS:
        raise InvalidRestriction(f"allowed_ips holds at most {MAX_NETWORKS} networks")
    ordered = sorted(networks, key=lambda n: (n.version, n.network_address, n.prefixlen))
    return tuple(str(n) for n in ordered)


def subset(narrower: Iterable[str], wider: Iterable[str]) -> bool:
    """Whether every scope of `narrower` is one of `wider`'s."""
    return set(narrower) <= set(wider)


def within(narrower: tuple[str, ...], wider: tuple[str, ...]) -> bool:
    """Whether an allow-list lets in no address `wider` keeps out: every network of `narrower`
    inside one of `wider`'s. An empty `wider` (anywhere) holds anything; an empty `narrower`
    (anywhere) is within only that."""
    if not wider:
        return True
    if not narrower:
        return False
    outer = _networks(wider)
    return all(
        any(n.version == w.version and n.subnet_of(w) for w in outer)  # type: ignore[arg-type]
        for n in _networks(narrower)
    )


@lru_cache(maxsize=4096)
def _networks(allowed: tuple[str, ...]) -> tuple[Network, ...]:
    """An allow-list's networks, parsed once: keys share few distinct lists, and the tuple the
    principal carries is the cache's key."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in allowed)


def allows(allowed: tuple[str, ...], address: str) -> bool:
    """Whether a request from `address` may use a key with this allow-list (empty: anywhere).
    An address that is not one (a proxy's token, an unknown peer) is outside every network; an
    IPv4-mapped IPv6 address is its IPv4 address."""
    return not allowed or _allows(allowed, address)


@lru_cache(maxsize=65_536)
def _allows(allowed: tuple[str, ...], address: str) -> bool:
    """Remembered per allow-list and address: a key's clients repeat their addresses, and
    parsing one costs more than the rest of the check (bounded: LRU)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:  # type: ignore[union-attr]
        ip = ip.ipv4_mapped  # type: ignore[union-attr]
    return any(ip in net for net in _networks(allowed))
