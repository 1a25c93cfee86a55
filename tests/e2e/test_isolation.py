"""Isolation: every management route, tried on account A's keys with another account's master
key, A's standard key, A's expired key and A's revoked master key, never reads or changes
anything across accounts; A's keys are unchanged afterwards."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.stack import BIN, Stack


def cli(stack: Stack, *args: str) -> Any:
    done = subprocess.run(
        [str(BIN / "aitbc"), *args, "--json"],
        env={**stack.env(), "PATH": str(BIN)},
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return json.loads(done.stdout)


def keys_of(stack: Stack, account_id: str) -> list[dict[str, Any]]:
    """A's keys as the operator sees them: what must not change."""
    listed = cli(stack, "keys", "list", "--account", account_id)["keys"]
    fields = ("key_id", "name", "kind", "status", "hint", "expires_at", "revoked_at")
    return sorted(({f: key.get(f) for f in fields} for key in listed), key=lambda k: k["key_id"])


def routes(target: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every management route, aimed at `target` where it takes a key id."""
    return [
        ("GET", "/v1/api-keys", None),
        ("POST", "/v1/api-keys", {"name": "intruder"}),
        ("GET", f"/v1/api-keys/{target}", None),
        ("GET", f"/v1/api-keys/{target}/events", None),
        ("POST", f"/v1/api-keys/{target}/regenerate", {"grace_period_seconds": 0}),
        ("DELETE", f"/v1/api-keys/{target}", None),
        ("GET", f"/v1/usage?key_id={target}", None),
    ]


def call(api: httpx.Client, key: str, method: str, path: str, body: Any) -> httpx.Response:
    return api.request(method, path, json=body, headers={"X-API-Key": key})


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


@pytest.fixture
def victim(api: httpx.Client, stack: Stack) -> dict[str, Any]:
    """Account A: a master key, a standard key with a recognisable name, and a key that
    expires a few seconds after it is made (time for a loaded machine to use it first)."""
    body = api.post("/v1/accounts", json={"name": "victim"}).json()
    master = body["master_key"]["key"]
    marker = f"a-only-{secrets.token_hex(4)}"
    standard = api.post("/v1/api-keys", json={"name": marker}, headers={"X-API-Key": master}).json()
    soon = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    expiring = api.post(
        "/v1/api-keys", json={"name": "brief", "expires_at": soon}, headers={"X-API-Key": master}
    ).json()
    assert api.get("/v1/jobs", headers={"X-API-Key": expiring["key"]}).status_code == 200
    return {
        "account_id": body["account_id"],
        "master": master,
        "master_key_id": body["master_key"]["key_id"],
        "standard": standard,
        "expiring": expiring,
        "marker": marker,
    }


def test_no_key_reaches_across_accounts(
    api: httpx.Client, stack: Stack, victim: dict[str, Any]
) -> None:
    intruder = api.post("/v1/accounts", json={"name": "intruder"}).json()
    b_master = intruder["master_key"]["key"]
    a_targets = [victim["standard"]["key_id"], victim["master_key_id"]]
    while datetime.now(UTC).timestamp() < _expiry(victim) + 0.2:
        time.sleep(0.1)
    before = keys_of(stack, victim["account_id"])

    another_accounts_master_finds_nothing(api, b_master, victim, a_targets)
    a_standard_key_manages_nothing(api, victim, a_targets)
    an_expired_key_is_refused(api, victim, a_targets[0])
    assert keys_of(stack, victim["account_id"]) == before

    revoked = a_revoked_master_is_refused(
        api, stack, victim, [*a_targets, intruder["master_key"]["key_id"]]
    )
    assert [k for k in revoked if k["key_id"] != victim["master_key_id"]] == [
        k for k in before if k["key_id"] != victim["master_key_id"]
    ]
    # and B's account holds only its own: its master and what it made itself
    listed = api.get("/v1/api-keys", headers={"X-API-Key": b_master}).json()["keys"]
    assert not {k["key_id"] for k in listed} & {k["key_id"] for k in before}
    assert all(k["kind"] == "master" or k["name"] == "intruder" for k in listed)


def another_accounts_master_finds_nothing(
    api: httpx.Client, b_master: str, victim: dict[str, Any], a_targets: list[str]
) -> None:
    """B's master key: A's keys are as good as absent; B's own list and creations stay in B."""
    for target in a_targets:
        for method, path, body in routes(target):
            response = call(api, b_master, method, path, body)
            if path == "/v1/api-keys":
                assert response.status_code in (200, 201), response.text
                listed = [k["key_id"] for k in response.json().get("keys", [response.json()])]
                assert not set(listed) & set(a_targets)
                continue
            assert response.status_code == 404, (method, path, response.text)
            assert error_code(response) == "NOT_FOUND"
            assert victim["marker"] not in response.text
            assert victim["standard"]["hint"] not in response.text


def a_standard_key_manages_nothing(
    api: httpx.Client, victim: dict[str, Any], a_targets: list[str]
) -> None:
    """A's standard key: no management at all; its own account's usage only."""
    for target in a_targets:
        for method, path, body in routes(target):
            response = call(api, victim["standard"]["key"], method, path, body)
            if path.startswith("/v1/usage"):
                assert response.status_code == 200, response.text
                assert response.json()["account_id"] == victim["account_id"]
                continue
            assert response.status_code == 403, (method, path, response.text)
            assert error_code(response) == "FORBIDDEN"


def an_expired_key_is_refused(api: httpx.Client, victim: dict[str, Any], target: str) -> None:
    """A's expired key: refused before anything is looked at."""
    for method, path, body in routes(target):
        response = call(api, victim["expiring"]["key"], method, path, body)
        assert response.status_code == 401, (method, path, response.text)
        assert error_code(response) == "API_KEY_EXPIRED"


def a_revoked_master_is_refused(
    api: httpx.Client, stack: Stack, victim: dict[str, Any], targets: list[str]
) -> list[dict[str, Any]]:
    """A's master key, revoked by an operator: refused everywhere, once the edge has heard of
    it, and A's keys unchanged by the attempts; returns them."""
    cli(stack, "keys", "revoke", victim["master_key_id"], "--reason", "isolation test")
    deadline = time.monotonic() + 15
    while api.get("/v1/api-keys", headers={"X-API-Key": victim["master"]}).status_code == 200:
        assert time.monotonic() < deadline, "the edge still admits a revoked master key"
        time.sleep(0.1)
    revoked = keys_of(stack, victim["account_id"])
    for target in targets:
        for method, path, body in routes(target):
            response = call(api, victim["master"], method, path, body)
            assert response.status_code == 401, (method, path, response.text)
            assert error_code(response) == "API_KEY_REVOKED"
    assert keys_of(stack, victim["account_id"]) == revoked
    return revoked


def _expiry(victim: dict[str, Any]) -> float:
    return datetime.fromisoformat(victim["expiring"]["expires_at"]).timestamp()
