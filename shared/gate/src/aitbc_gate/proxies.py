"""Who the client is, and whether it came over HTTPS: the socket's peer and scheme, unless that
peer is a trusted proxy (`TRUSTED_PROXIES`), whose forwarding headers then say. The edge
middleware rewrites the scope's `client` and `scheme` with the answer before anything reads
them, so the throttles, the access log, `REQUIRE_HTTPS`, HSTS and the dashboard's Secure
cookies all use it. uvicorn's own handling of these headers is off (aitbc_api.main): it would
believe any local process, and it knows no `Forwarded`.

The rule: a proxy appends the address it got the connection from; everything to its left was
written by whoever connected to it, perhaps the client itself. So the hops are read from the
right, past trusted proxies, and the first one that is not a trusted proxy is the client
(every hop trusted: the leftmost). The scheme is the client's element's `proto` with
`Forwarded` (RFC 7239), or the last `X-Forwarded-Proto` value: the nearest proxy's word.

Only one kind of header is believed (`TRUSTED_PROXY_HEADERS`: `x-forwarded`, the default, or
`forwarded`): a proxy that writes one kind passes the other on as the client made it up.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from litestar.types import HTTPScope, WebSocketScope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Hop = tuple[str, int, str]  # host, port (0: unknown), proto ("" unless Forwarded says)

MAX_HOST = 64  # longer than any address; a longer name from a proxy is cut to this
SCHEMES = frozenset({"http", "https"})
HEADER_KINDS = ("x-forwarded", "forwarded")


def parse_networks(value: str) -> tuple[Network, ...]:
    """`TRUSTED_PROXIES`: comma-separated CIDRs or addresses, IPv4 or IPv6."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"TRUSTED_PROXIES: {item!r} is not an IP address or network") from None
    return tuple(networks)


def _host_port(hop: str) -> tuple[str, int]:
    """`1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`, or a proxy's own token."""
    host, port = hop, ""
    if hop.startswith("["):
        host, _, rest = hop[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif hop.count(":") == 1:
        host, _, port = hop.partition(":")
    # ASCII digits only: the header's Latin-1 has others (²), which int() refuses
    return host[:MAX_HOST], int(port) if port.isascii() and port.isdigit() and len(port) <= 5 else 0


def _unquoted(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _forwarded_hops(values: list[str]) -> list[Hop]:
    """RFC 7239 elements, in order: `for=...;proto=...;by=...`, comma-separated."""
    hops = []
    for element in ",".join(values).split(","):
        pairs = {}
        for pair in element.split(";"):
            name, _, value = pair.partition("=")
            pairs[name.strip().lower()] = _unquoted(value)
        if pairs.get("for"):
            host, port = _host_port(pairs["for"])
            hops.append((host, port, pairs.get("proto", "").lower()))
    return hops


def _x_forwarded_hops(values: list[str]) -> list[Hop]:
    hops = (_host_port(hop.strip()) for hop in ",".join(values).split(","))
    return [(host, port, "") for host, port in hops if host]


def client_address(scope: HTTPScope | WebSocketScope) -> str:
    """The client's address, once `TrustedProxies.resolve` has run ("" when unknown)."""
    client = scope.get("client")
    return client[0] if client else ""


class TrustedProxies:
    """The proxies whose forwarding headers are believed, and how to read them."""

    def __init__(self, networks: Sequence[Network], header: str = "x-forwarded") -> None:
        if header not in HEADER_KINDS:
            raise ValueError(f"TRUSTED_PROXY_HEADERS: {header!r} is not one of {HEADER_KINDS}")
        self.networks = tuple(networks)
        self.forwarded = header == "forwarded"
        self._trusted = lru_cache(maxsize=4096)(self._is_trusted)  # peers repeat

    @classmethod
    def of(cls, networks: str, header: str = "x-forwarded") -> TrustedProxies:
        return cls(parse_networks(networks), header.strip().lower())

    def _is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # a name or a token is no address of ours
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def trusted(self, host: str) -> bool:
        return len(host) <= MAX_HOST and self._trusted(host)

    def resolve(self, scope: HTTPScope) -> None:
        """Sets the scope's `client` and `scheme` from the headers of a trusted peer."""
        peer = scope.get("client")
        if not self.networks or peer is None or not self.trusted(peer[0]):
            return
        forwarded, protos = [], []
        wanted = b"forwarded" if self.forwarded else b"x-forwarded-for"
        for name, value in scope["headers"]:
            if name == wanted:
                forwarded.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto" and not self.forwarded:
                protos.append(value.decode("latin-1"))
        hops = _forwarded_hops(forwarded) if self.forwarded else _x_forwarded_hops(forwarded)
        client = next((hop for hop in reversed(hops) if not self.trusted(hop[0])), None)
        client = client or (hops[0] if hops else None)
        if client is not None:
            scope["client"] = (client[0], client[1])
        proto = client[2] if self.forwarded and client else ",".join(protos).split(",")[-1]
        if proto.strip().lower() in SCHEMES:
            scope["scheme"] = proto.strip().lower()
