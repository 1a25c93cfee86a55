"""A client's view of keys: sign up, create, use by header and query, revoke, regenerate."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from aitbc_contracts.keyformat import generate_key, is_well_formed
from tests.e2e.stack import Stack


@pytest.fixture
def system(keys_databases: Stack) -> Stack:
    """Every test here on the keys service's SQLite store, and on PostgreSQL where it runs."""
    return keys_databases


def new_key(api: httpx.Client, master: str, **body: object) -> dict[str, str]:
    response = api.post(
        "/v1/api-keys", json={"name": "worker", **body}, headers={"X-API-Key": master}
    )
    assert response.status_code == 201, response.text
    return response.json()


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


# Seconds a key has left in the tests of expiry and grace: wide enough that a loaded machine
# still uses it before the end, which the tests then wait for.
WINDOW = 5


def first_refusal(
    api: httpx.Client, key: str, not_before: float, timeout: float = 30.0
) -> httpx.Response:
    """Uses `key` until it is refused, and returns the refusal: the key is admitted at first
    and until `not_before` (a time.time()), and refused within `timeout` seconds of it."""
    while (response := api.get("/v1/jobs", headers={"X-API-Key": key})).status_code == 200:
        assert time.time() < not_before + timeout, "the key is still admitted"
        time.sleep(0.5)
    assert time.time() >= not_before, f"refused before its time: {response.text}"
    return response


def test_sign_up_gives_a_free_account_and_its_master_key_once(api: httpx.Client) -> None:
    response = api.post("/v1/accounts", json={"name": "Ada"})
    assert response.status_code == 201
    body = response.json()
    assert body["plan"] == "free" and body["name"] == "Ada"
    assert body["account_id"].startswith("acc_")
    assert is_well_formed(body["master_key"]["key"])
    assert response.headers["x-request-id"]
    listed = api.get("/v1/api-keys", headers={"X-API-Key": body["master_key"]["key"]}).json()
    assert [k["kind"] for k in listed["keys"]] == ["master"]
    assert "key" not in listed["keys"][0]  # the plaintext is never shown again


def test_sign_up_without_a_body(api: httpx.Client) -> None:
    response = api.post("/v1/accounts")
    assert response.status_code == 201, response.text
    assert response.json()["plan"] == "free"


def test_a_key_reaches_the_coordinator_by_header_and_by_query(
    api: httpx.Client, account: dict[str, str]
) -> None:
    key = new_key(api, account["master"])["key"]
    created = api.post("/v1/jobs", json={"model": "m", "input": "x"}, headers={"X-API-Key": key})
    assert created.status_code == 201, created.text
    by_header = api.get("/v1/jobs", headers={"X-API-Key": key})
    by_query = api.get("/v1/jobs", params={"api_key": key})
    assert by_header.status_code == by_query.status_code == 200
    assert by_header.json()["jobs"] == by_query.json()["jobs"]
    assert [j["id"] for j in by_header.json()["jobs"]] == [created.json()["id"]]


def test_neither_the_header_nor_the_query_parameter_wins_over_the_other(
    api: httpx.Client, account: dict[str, str]
) -> None:
    key = new_key(api, account["master"])["key"]
    for header, query in ((key, "junk"), ("junk", key)):
        both = api.get("/v1/jobs", headers={"X-API-Key": header}, params={"api_key": query})
        assert both.status_code == 400 and error_code(both) == "CONFLICTING_API_KEYS"
    same = api.get("/v1/jobs", headers={"X-API-Key": key}, params={"api_key": key})
    assert same.status_code == 200


def test_a_revoked_key_is_refused_on_the_very_next_request(
    api: httpx.Client, account: dict[str, str]
) -> None:
    created = new_key(api, account["master"])
    assert (
        api.get("/v1/jobs", headers={"X-API-Key": created["key"]}).status_code == 200
    )  # cached now
    revoked = api.delete(
        f"/v1/api-keys/{created['key_id']}", headers={"X-API-Key": account["master"]}
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    after = api.get("/v1/jobs", headers={"X-API-Key": created["key"]})
    assert after.status_code == 401 and error_code(after) == "API_KEY_REVOKED"
    shown = api.get(f"/v1/api-keys/{created['key_id']}", headers={"X-API-Key": account["master"]})
    assert shown.json()["status"] == "revoked" and shown.json()["revoked_at"]


def test_regenerate_replaces_the_secret_and_keeps_the_key_id(
    api: httpx.Client, account: dict[str, str]
) -> None:
    created = new_key(api, account["master"])
    assert api.get("/v1/jobs", headers={"X-API-Key": created["key"]}).status_code == 200
    regenerated = api.post(
        f"/v1/api-keys/{created['key_id']}/regenerate", headers={"X-API-Key": account["master"]}
    )
    assert regenerated.status_code == 200, regenerated.text
    fresh = regenerated.json()
    assert fresh["key_id"] == created["key_id"] and fresh["key"] != created["key"]
    old = api.get("/v1/jobs", headers={"X-API-Key": created["key"]})
    assert old.status_code == 401 and error_code(old) == "INVALID_API_KEY"
    assert api.get("/v1/jobs", headers={"X-API-Key": fresh["key"]}).status_code == 200


def test_regenerate_with_a_grace_period_keeps_the_old_secret_working_until_it_ends(
    api: httpx.Client, account: dict[str, str]
) -> None:
    created = new_key(api, account["master"])
    asked = time.time()
    regenerated = api.post(
        f"/v1/api-keys/{created['key_id']}/regenerate",
        json={"grace_period_seconds": WINDOW},
        headers={"X-API-Key": account["master"]},
    ).json()
    assert api.get("/v1/jobs", headers={"X-API-Key": regenerated["key"]}).status_code == 200
    late = first_refusal(api, created["key"], not_before=asked + WINDOW)
    assert late.status_code == 401 and error_code(late) == "INVALID_API_KEY"
    assert api.get("/v1/jobs", headers={"X-API-Key": regenerated["key"]}).status_code == 200


def test_an_expired_key_is_refused(api: httpx.Client, account: dict[str, str]) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=WINDOW)
    created = new_key(api, account["master"], expires_at=expires.isoformat())
    expired = first_refusal(api, created["key"], not_before=expires.timestamp())
    assert expired.status_code == 401 and error_code(expired) == "API_KEY_EXPIRED"
    shown = api.get(f"/v1/api-keys/{created['key_id']}", headers={"X-API-Key": account["master"]})
    assert shown.json()["status"] == "expired"


def test_management_needs_the_master_key(api: httpx.Client, account: dict[str, str]) -> None:
    standard = new_key(api, account["master"])
    for method, path in [
        ("GET", "/v1/api-keys"),
        ("POST", "/v1/api-keys"),
        ("GET", f"/v1/api-keys/{standard['key_id']}"),
        ("DELETE", f"/v1/api-keys/{standard['key_id']}"),
        ("POST", f"/v1/api-keys/{standard['key_id']}/regenerate"),
    ]:
        response = api.request(
            method, path, json={"name": "x"}, headers={"X-API-Key": standard["key"]}
        )
        assert response.status_code == 403, (method, path)
        assert error_code(response) == "FORBIDDEN"


def test_another_accounts_key_is_not_found(api: httpx.Client, account: dict[str, str]) -> None:
    other = api.post("/v1/accounts").json()
    theirs = new_key(api, other["master_key"]["key"])
    mine = {"X-API-Key": account["master"]}
    for method, path in [
        ("GET", f"/v1/api-keys/{theirs['key_id']}"),
        ("DELETE", f"/v1/api-keys/{theirs['key_id']}"),
        ("POST", f"/v1/api-keys/{theirs['key_id']}/regenerate"),
        ("GET", f"/v1/api-keys/{other['master_key']['key_id']}"),
    ]:
        response = api.request(method, path, headers=mine)
        assert response.status_code == 404 and error_code(response) == "NOT_FOUND", (method, path)
    listed = api.get("/v1/api-keys", headers=mine).json()["keys"]
    assert theirs["key_id"] not in {k["key_id"] for k in listed}
    # and their key still works: nothing was changed across accounts
    assert api.get("/v1/jobs", headers={"X-API-Key": theirs["key"]}).status_code == 200


def test_jobs_are_scoped_to_the_account(api: httpx.Client, account: dict[str, str]) -> None:
    other = api.post("/v1/accounts").json()["master_key"]["key"]
    job = api.post(
        "/v1/jobs", json={"model": "m", "input": 1}, headers={"X-API-Key": account["master"]}
    ).json()
    assert api.get(f"/v1/jobs/{job['id']}", headers={"X-API-Key": other}).status_code == 404
    assert api.get("/v1/jobs", headers={"X-API-Key": other}).json()["jobs"] == []


def test_auth_errors_have_stable_codes(api: httpx.Client) -> None:
    missing = api.get("/v1/jobs")
    assert missing.status_code == 401 and error_code(missing) == "MISSING_API_KEY"
    for bad in ["nope", "aitbc_" + "a" * 49, generate_key()[:-1] + "!", "x" * 4000]:
        response = api.get("/v1/jobs", headers={"X-API-Key": bad})
        assert response.status_code == 401 and error_code(response) == "INVALID_API_KEY"
    unknown = api.get("/v1/jobs", headers={"X-API-Key": generate_key()})
    assert unknown.status_code == 401 and error_code(unknown) == "INVALID_API_KEY"


def test_public_routes_need_no_key(api: httpx.Client) -> None:
    response = api.get("/v1/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_request_ids_are_echoed_or_made(api: httpx.Client) -> None:
    assert (
        api.get("/v1/health", headers={"X-Request-Id": "req-42"}).headers["x-request-id"]
        == "req-42"
    )
    made = api.get("/v1/jobs").headers["x-request-id"]
    assert len(made) == 32


def test_openapi_declares_both_security_schemes(api: httpx.Client) -> None:
    schema = api.get("/schema/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "name": "X-API-Key", "in": "header"}
    assert schemes["ApiKeyQuery"] == {"type": "apiKey", "name": "api_key", "in": "query"}
    assert "/v1/api-keys/{key_id}/regenerate" in schema["paths"]


def test_the_docs_page_loads_nothing_from_another_host(api: httpx.Client) -> None:
    page = api.get("/schema")
    assert page.status_code == 200 and "https://" not in page.text and "http://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert api.get(f"/schema/assets/{asset}").status_code == 200
