"""An owner's audit trail over HTTP: a key's events, with who acted and in which request."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_keys_flow import error_code, new_key


@pytest.fixture
def system(keys_databases: Stack) -> Stack:
    """Every test here on the keys service's SQLite store, and on PostgreSQL where it runs."""
    return keys_databases


def test_a_keys_events_name_the_acting_key_and_request_and_never_a_secret(
    api: httpx.Client, account: dict[str, str]
) -> None:
    master = {"X-API-Key": account["master"]}
    created = api.post("/v1/api-keys", json={"name": "audited"}, headers=master)
    assert created.status_code == 201, created.text
    key_id, secrets = created.json()["key_id"], [created.json()["key"]]
    requests = [created.headers["x-request-id"]]
    for _ in range(2):
        regenerated = api.post(f"/v1/api-keys/{key_id}/regenerate", headers=master)
        assert regenerated.status_code == 200, regenerated.text
        secrets.append(regenerated.json()["key"])
        requests.append(regenerated.headers["x-request-id"])
    revoked = api.delete(f"/v1/api-keys/{key_id}", headers=master)
    requests.append(revoked.headers["x-request-id"])

    listed = api.get(f"/v1/api-keys/{key_id}/events", headers=master)
    assert listed.status_code == 200, listed.text
    events = listed.json()["events"]
    assert [(e["type"], e["version"], e["actor"], e["request_id"]) for e in events] == [
        ("key.created.v1", 1, account["master_key_id"], requests[0]),
        ("key.regenerated.v1", 2, account["master_key_id"], requests[1]),
        ("key.regenerated.v1", 3, account["master_key_id"], requests[2]),
        ("key.revoked.v1", 4, account["master_key_id"], requests[3]),
    ]
    assert events[0]["details"]["name"] == "audited"
    assert events[1]["details"]["hint"] == secrets[1][:10]
    assert all(e["occurred_at"] for e in events)
    assert "secret_hash" not in listed.text and "previous_hash" not in listed.text
    assert not any(secret in listed.text for secret in secrets)


def test_another_accounts_key_has_no_events_to_show(
    api: httpx.Client, account: dict[str, str]
) -> None:
    theirs = api.post("/v1/accounts", json={"name": "other"}).json()
    their_key = new_key(api, theirs["master_key"]["key"])["key_id"]
    response = api.get(f"/v1/api-keys/{their_key}/events", headers={"X-API-Key": account["master"]})
    assert response.status_code == 404 and error_code(response) == "NOT_FOUND"
    malformed = api.get("/v1/api-keys/nope/events", headers={"X-API-Key": account["master"]})
    assert malformed.status_code == 404
    standard = new_key(api, account["master"])
    forbidden = api.get(
        f"/v1/api-keys/{standard['key_id']}/events", headers={"X-API-Key": standard["key"]}
    )
    assert forbidden.status_code == 403 and error_code(forbidden) == "FORBIDDEN"
