"""Keys that can do less, as a client sees them over HTTP on a running system: a key limited to
reading jobs from one network behind a trusted proxy, a restriction that holds on another edge
at once, root keys that make narrower keys and nothing wider, and the key's audit trail."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from aitbc_infra.processes import ChildProcess
from tests.e2e.stack import Stack
from tests.e2e.test_keys_flow import new_key

NETWORK = "203.0.113.0/24"
INSIDE = {"X-Forwarded-For": "203.0.113.7"}
OUTSIDE = {"X-Forwarded-For": "198.51.100.1"}
JOB = {"model": "echo", "input": "hello", "params": {"n": 1}}


@pytest.fixture(scope="module")
def behind_a_proxy(stack: Stack) -> Iterator[ChildProcess]:
    """An edge that believes the forwarding headers of the test client's address."""
    edge = stack.add_edge("api-restricted", TRUSTED_PROXIES="127.0.0.1/32, ::1/128").start()
    yield edge
    edge.stop()


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text
    message: str = response.json()["error"]["message"]
    return message


def new_master(api: httpx.Client) -> str:
    master: str = api.post("/v1/accounts").json()["master_key"]["key"]
    return master


def test_a_key_limited_to_reading_jobs_from_one_network(
    api: httpx.Client, behind_a_proxy: ChildProcess
) -> None:
    made = new_key(api, new_master(api), scopes=["jobs:read"], allowed_ips=[NETWORK])
    assert made["scopes"] == ["jobs:read"] and made["allowed_ips"] == [NETWORK]
    key = {"X-API-Key": made["key"]}
    with httpx.Client(base_url=behind_a_proxy.url, timeout=10) as proxied:
        assert proxied.get("/v1/jobs", headers={**key, **INSIDE}).status_code == 200
        message = error(
            proxied.post("/v1/jobs", json=JOB, headers={**key, **INSIDE}), 403, "INSUFFICIENT_SCOPE"
        )
        assert "jobs:write" in message
        message = error(proxied.get("/v1/jobs", headers={**key, **OUTSIDE}), 403, "IP_NOT_ALLOWED")
        assert "198.51.100.1" in message and NETWORK not in message  # never the list
        # the edge's own routes too: its usage needs usage:read, its keys keys:manage
        error(proxied.get("/v1/usage", headers={**key, **INSIDE}), 403, "INSUFFICIENT_SCOPE")
        error(proxied.get("/v1/api-keys", headers={**key, **INSIDE}), 403, "INSUFFICIENT_SCOPE")
    # the session's edge trusts no proxy: the test client is 127.0.0.1, outside, whatever it says
    error(api.get("/v1/jobs", headers={**key, **INSIDE}), 403, "IP_NOT_ALLOWED")


def test_a_restriction_holds_on_another_edge_at_once(
    api: httpx.Client, behind_a_proxy: ChildProcess
) -> None:
    master = new_master(api)
    made = new_key(api, master)
    key = {"X-API-Key": made["key"]}
    with httpx.Client(base_url=behind_a_proxy.url, timeout=10) as other:
        assert other.post("/v1/jobs", json=JOB, headers=key).status_code == 201  # now cached
        changed = api.patch(
            f"/v1/api-keys/{made['key_id']}",
            json={"scopes": ["jobs:read"], "shadow": True},
            headers={"X-API-Key": master},
        )
        assert changed.status_code == 200, changed.text
        assert (changed.json()["scopes"], changed.json()["shadow"]) == (["jobs:read"], True)
        deadline = time.monotonic() + 5
        while (answer := other.post("/v1/jobs", json=JOB, headers=key)).status_code == 201:
            assert time.monotonic() < deadline, "the other edge kept the key's old facts"
            time.sleep(0.05)
        error(answer, 403, "INSUFFICIENT_SCOPE")
        assert other.get("/v1/jobs", headers=key).status_code == 200
    shown = api.get(f"/v1/api-keys/{made['key_id']}", headers={"X-API-Key": master}).json()
    assert (shown["scopes"], shown["allowed_ips"], shown["shadow"]) == (["jobs:read"], [], True)


def test_an_ipv4_mapped_address_lets_its_ipv4_client_in(api: httpx.Client) -> None:
    """The test client is 127.0.0.1; its address as a dual-stack log shows it lets it in."""
    made = new_key(api, new_master(api), allowed_ips=["::ffff:127.0.0.1"])
    assert made["allowed_ips"] == ["127.0.0.1/32"]
    assert api.get("/v1/jobs", headers={"X-API-Key": made["key"]}).status_code == 200


def test_restrictions_that_are_not_ones_are_refused_clearly(api: httpx.Client) -> None:
    master = new_master(api)
    owner = {"X-API-Key": master}
    for body, words in [
        ({"name": "x", "scopes": ["Jobs:Read"]}, "resource:action"),
        ({"name": "x", "allowed_ips": ["10.0.0.0/33"]}, "not an IP address"),
    ]:
        assert words in error(
            api.post("/v1/api-keys", json=body, headers=owner), 400, "VALIDATION_ERROR"
        )
    made = new_key(api, master)
    path = f"/v1/api-keys/{made['key_id']}"
    error(
        api.patch(path, json={"allowed_ips": ["nowhere"]}, headers=owner), 400, "VALIDATION_ERROR"
    )
    error(api.patch(path, json={"colour": "red"}, headers=owner), 400, "VALIDATION_ERROR")
    # an IPv6 zone is no network, and its text would be kept whole: 32 of ~28 kB each made a
    # key the size of a bus message, and two of them an account whose keys could not be listed
    zoned = [f"fe80::{i:x}%" + "a" * 28_000 for i in range(32)]
    refused = api.patch(path, json={"allowed_ips": zoned}, headers=owner)
    assert "not an IP address" in error(refused, 400, "VALIDATION_ERROR")
    assert len(refused.content) < 1000
    master_id = api.get("/v1/api-keys", headers=owner).json()["keys"][0]["key_id"]
    message = error(
        api.patch(f"/v1/api-keys/{master_id}", json={"scopes": ["jobs:read"]}, headers=owner),
        400,
        "VALIDATION_ERROR",
    )
    assert "master key cannot be restricted" in message


def test_a_root_key_makes_narrower_keys_only(api: httpx.Client) -> None:
    master = new_master(api)
    root = new_key(api, master, name="root", scopes=["keys:manage", "jobs:read", "jobs:write"])
    as_root = {"X-API-Key": root["key"]}
    narrower = new_key(api, root["key"], scopes=["jobs:read"])
    assert narrower["scopes"] == ["jobs:read"]
    for scopes in (["usage:read"], []):
        body = {"name": "wider", "scopes": scopes}
        error(api.post("/v1/api-keys", json=body, headers=as_root), 403, "FORBIDDEN")
    listed = api.get("/v1/api-keys", headers=as_root)
    assert listed.status_code == 200
    master_id = next(k["key_id"] for k in listed.json()["keys"] if k["kind"] == "master")
    error(api.delete(f"/v1/api-keys/{master_id}", headers=as_root), 403, "FORBIDDEN")
    body = {"master_key_data_plane": False}
    error(api.patch("/v1/account", json=body, headers=as_root), 403, "INSUFFICIENT_SCOPE")
    # it narrows what it made, and revokes it
    path = f"/v1/api-keys/{narrower['key_id']}"
    changed = api.patch(path, json={"scopes": ["jobs:write"]}, headers=as_root)
    assert changed.status_code == 200 and changed.json()["scopes"] == ["jobs:write"]
    assert api.delete(path, headers=as_root).json()["status"] == "revoked"
    # a standard key without keys:manage manages nothing, scoped or not
    plain = new_key(api, master)
    error(api.get("/v1/api-keys", headers={"X-API-Key": plain["key"]}), 403, "FORBIDDEN")

    events = api.get(f"{path}/events", headers={"X-API-Key": master}).json()["events"]
    assert [e["type"] for e in events] == [
        "key.created.v1",
        "key.restricted.v1",
        "key.restricted.v1",
        "key.revoked.v1",
    ]
    assert events[1]["actor"] == root["key_id"]
    assert events[2]["details"] == {"scopes": ["jobs:write"], "allowed_ips": [], "shadow": False}
