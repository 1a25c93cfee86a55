"""What a key's restrictions may be, as they are kept, and whether an address is let in
(aitbc_contracts.restrictions)."""

from __future__ import annotations

import pytest

from aitbc_contracts import restrictions as r


def test_scopes_are_kept_deduplicated_and_sorted() -> None:
    assert r.scopes(["jobs:write", "jobs:read", "jobs:write"]) == ("jobs:read", "jobs:write")
    assert r.scopes([]) == ()
    assert r.scopes(["a.b-c_d:x9"]) == ("a.b-c_d:x9",)


@pytest.mark.parametrize(
    "bad", ["jobs", "Jobs:read", "jobs:", ":read", "jobs:read:all", "1jobs:read", "jobs read", ""]
)
def test_a_scope_is_resource_colon_action_in_lowercase(bad: str) -> None:
    with pytest.raises(r.InvalidRestriction, match="resource:action"):
        r.scopes([bad])


def test_a_key_holds_at_most_sixteen_scopes_and_short_ones() -> None:
    assert len(r.scopes([f"s{i}:read" for i in range(16)])) == 16
    with pytest.raises(r.InvalidRestriction, match="at most 16"):
        r.scopes([f"s{i}:read" for i in range(17)])
    with pytest.raises(r.InvalidRestriction, match="at most 64 characters"):
        r.scopes(["a" * 60 + ":read"])


def test_networks_are_kept_in_their_normal_text() -> None:
    kept = r.allowed_ips(["10.1.2.3/8", "2001:DB8::1", "192.0.2.7", "10.0.0.0/8", "::1/128"])
    assert kept == ("10.0.0.0/8", "192.0.2.7/32", "::1/128", "2001:db8::1/128")


def test_an_ipv4_mapped_network_is_kept_as_its_ipv4_network() -> None:
    kept = r.allowed_ips(["::ffff:127.0.0.1/128", "::ffff:203.0.113.0/120", "::ffff:10.1.2.3"])
    assert kept == ("10.1.2.3/32", "127.0.0.1/32", "203.0.113.0/24")
    assert r.allows(kept, "127.0.0.1") and r.allows(kept, "::ffff:203.0.113.9")
    assert r.allowed_ips(["::ffff:0:0/95"]) == ("::fffe:0:0/95",)  # wider: an IPv6 network


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "example.com", "10.0.0", "", "2001:db8::/129"])
def test_an_allow_list_holds_networks_only(bad: str) -> None:
    with pytest.raises(r.InvalidRestriction, match="not an IP address or CIDR"):
        r.allowed_ips([bad])


@pytest.mark.parametrize("zoned", ["fe80::1%eth0", "fe80::1%eth0/64", "fe80::%" + "a" * 30_000])
def test_an_allow_list_holds_no_ipv6_zone(zoned: str) -> None:
    with pytest.raises(r.InvalidRestriction, match="not an IP address or CIDR") as refused:
        r.allowed_ips([zoned])
    assert len(str(refused.value)) < 200  # the message does not carry the whole entry


def test_an_allow_list_holds_at_most_32_networks() -> None:
    assert len(r.allowed_ips([f"10.0.{i}.0/24" for i in range(32)])) == 32
    with pytest.raises(r.InvalidRestriction, match="at most 32"):
        r.allowed_ips([f"10.0.{i}.0/24" for i in range(33)])


def test_an_allow_list_lets_in_its_networks_only() -> None:
    allowed = ("203.0.113.0/24", "2001:db8::/32")
    assert r.allows(allowed, "203.0.113.9")
    assert r.allows(allowed, "2001:db8::42")
    assert r.allows(allowed, "::ffff:203.0.113.9")  # IPv4-mapped: its IPv4 address
    assert not r.allows(allowed, "198.51.100.1")
    assert not r.allows(allowed, "2001:db9::1")
    assert not r.allows(allowed, "")  # unknown peer
    assert not r.allows(allowed, "testclient")  # not an address at all
    assert r.allows((), "anything")  # no allow-list: from anywhere


def test_within_says_whether_an_allow_list_lets_in_no_more_than_another() -> None:
    assert r.within(("10.1.0.0/16",), ("10.0.0.0/8",))
    assert r.within(("10.1.0.0/16", "10.2.0.0/16"), ("10.0.0.0/8",))
    assert not r.within(("10.0.0.0/7",), ("10.0.0.0/8",))
    assert not r.within(("2001:db8::/48",), ("10.0.0.0/8",))
    assert not r.within((), ("10.0.0.0/8",))  # anywhere is wider than any network
    assert r.within((), ())
    assert r.within(("10.0.0.0/8",), ())
