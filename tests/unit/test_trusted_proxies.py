"""Who the client is and whether it came over HTTPS: the socket's peer, or what trusted
proxies say (the rightmost hop that is not a trusted proxy)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from aitbc_api.settings import Settings
from aitbc_gate.proxies import TrustedProxies
from tests.unit.edge_apps import without_bus


def resolved(
    proxies: TrustedProxies, peer: str, *headers: tuple[str, str], scheme: str = "http"
) -> tuple[tuple[str, int], str]:
    scope: dict[str, Any] = {
        "client": (peer, 5000),
        "scheme": scheme,
        "headers": [(name.lower().encode(), value.encode("latin-1")) for name, value in headers],
    }
    proxies.resolve(scope)  # type: ignore[arg-type]
    return scope["client"], scope["scheme"]


LB = TrustedProxies.of("10.0.0.0/8, 2001:db8:ffff::/48, 127.0.0.1")


def test_an_untrusted_peer_is_the_client_whatever_it_says() -> None:
    said = (
        ("X-Forwarded-For", "203.0.113.7"),
        ("Forwarded", "for=203.0.113.8;proto=https"),
        ("X-Forwarded-Proto", "https"),
    )
    assert resolved(LB, "198.51.100.1", *said) == (("198.51.100.1", 5000), "http")
    assert resolved(TrustedProxies.of(""), "127.0.0.1", *said) == (("127.0.0.1", 5000), "http")


def test_a_trusted_peer_names_the_rightmost_hop_that_is_not_a_trusted_proxy() -> None:
    xff = "X-Forwarded-For"
    assert resolved(LB, "10.0.0.1", (xff, "203.0.113.7"))[0] == ("203.0.113.7", 0)
    # the client made up the left part: the hop our proxy appended is what counts
    assert resolved(LB, "10.0.0.1", (xff, "1.1.1.1, 203.0.113.7"))[0] == ("203.0.113.7", 0)
    # behind two proxies of ours
    assert resolved(LB, "10.0.0.1", (xff, "1.1.1.1, 203.0.113.7, 10.0.0.9"))[0] == (
        "203.0.113.7", 0,
    )  # fmt: skip
    # several headers are one list, in order
    assert resolved(LB, "10.0.0.1", (xff, "1.1.1.1"), (xff, "203.0.113.7"))[0] == (
        "203.0.113.7", 0,
    )  # fmt: skip
    # every hop is ours: the leftmost is the client
    assert resolved(LB, "10.0.0.1", (xff, "10.0.0.7, 10.0.0.9"))[0] == ("10.0.0.7", 0)
    # ports and IPv6, bracketed or not; IPv4-mapped peers are IPv4
    assert resolved(LB, "10.0.0.1", (xff, "203.0.113.7:4711"))[0] == ("203.0.113.7", 4711)
    assert resolved(LB, "::ffff:10.0.0.1", (xff, "[2001:db8::1]:4711"))[0] == (
        "2001:db8::1", 4711,
    )  # fmt: skip
    assert resolved(LB, "2001:db8:ffff::1", (xff, "2001:db8::1"))[0] == ("2001:db8::1", 0)
    # nothing usable: the peer stays the client
    assert resolved(LB, "10.0.0.1", (xff, " , "))[0] == ("10.0.0.1", 5000)
    assert resolved(LB, "10.0.0.1")[0] == ("10.0.0.1", 5000)


def test_a_port_of_digits_that_are_no_number_is_no_port() -> None:
    """Headers are Latin-1, whose superscripts (\xb2 is ²) are digits that int() refuses."""
    xff = ("X-Forwarded-For", "192.0.2.1:\xb2, 203.0.113.7:\xb9\xb3")
    assert resolved(LB, "10.0.0.1", xff)[0] == ("203.0.113.7", 0)
    forwarded = TrustedProxies.of("10.0.0.0/8", "forwarded")
    said = ("Forwarded", 'for="[2001:db8::1]:\xb2"')
    assert resolved(forwarded, "10.0.0.1", said)[0] == ("2001:db8::1", 0)


def test_x_forwarded_proto_is_the_nearest_proxys_word() -> None:
    proto = "X-Forwarded-Proto"
    assert resolved(LB, "10.0.0.1", (proto, "https"))[1] == "https"
    assert resolved(LB, "10.0.0.1", (proto, "HTTPS"))[1] == "https"
    assert resolved(LB, "10.0.0.1", (proto, "http, https"))[1] == "https"
    assert resolved(LB, "10.0.0.1", (proto, "https"), (proto, "http"))[1] == "http"
    assert resolved(LB, "10.0.0.1", (proto, "gopher"))[1] == "http"
    assert resolved(LB, "10.0.0.1", (proto, "http"), scheme="https")[1] == "http"


def test_only_the_configured_header_is_believed() -> None:
    both = (("Forwarded", "for=198.51.100.9;proto=https"), ("X-Forwarded-For", "203.0.113.7"))
    assert resolved(LB, "10.0.0.1", *both) == (("203.0.113.7", 0), "http")
    rfc = TrustedProxies.of("10.0.0.0/8", header="forwarded")
    assert resolved(rfc, "10.0.0.1", *both) == (("198.51.100.9", 0), "https")
    with pytest.raises(ValueError, match="TRUSTED_PROXY_HEADERS"):
        TrustedProxies.of("10.0.0.0/8", header="x-real-ip")


def test_forwarded_takes_the_protocol_of_the_clients_own_element() -> None:
    rfc = TrustedProxies.of("10.0.0.0/8", header="forwarded")
    header = 'for=1.1.1.1;proto=http, For="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.5'
    assert resolved(rfc, "10.0.0.1", ("Forwarded", header)) == (
        ("2001:db8:cafe::17", 4711),
        "https",
    )
    one = ("Forwarded", "for=203.0.113.7")  # no proto: the connection's scheme stays
    assert resolved(rfc, "10.0.0.1", one) == (("203.0.113.7", 0), "http")
    odd = ("Forwarded", 'for=unknown;proto=https, for="_hidden"')
    assert resolved(rfc, "10.0.0.1", odd)[0] == ("_hidden", 0)  # a proxy's own name for it


def test_a_bad_network_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match=r"TRUSTED_PROXIES.*10\.0\.0\.0/33"):
        TrustedProxies.of("10.0.0.0/33")
    assert TrustedProxies.of(" ").networks == ()
    assert TrustedProxies.of("10.1.2.3/8").networks[0].compressed == "10.0.0.0/8"


def hsts(settings: Settings, base_url: str, **headers: str) -> str | None:
    app = without_bus(settings)
    client = TestClient(app, base_url=base_url)  # not entered: no lifespan, so no NATS
    answer = client.get("/schema/openapi.json", headers=headers)
    assert answer.status_code == 200
    return answer.headers.get("strict-transport-security")


def test_hsts_is_on_https_answers_only() -> None:
    assert hsts(Settings(), "https://edge.local") == "max-age=31536000"
    assert hsts(Settings(hsts_max_age=600), "https://edge.local") == "max-age=600"
    assert hsts(Settings(hsts_max_age=0), "https://edge.local") is None
    assert hsts(Settings(), "http://edge.local") is None
    assert hsts(Settings(), "http://edge.local", **{"X-Forwarded-Proto": "https"}) is None
    trusting = Settings(trusted_proxies="testclient")  # not an address: refused
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        hsts(trusting, "http://edge.local")
