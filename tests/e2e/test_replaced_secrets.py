"""Replaced secrets at the edge: a regenerate ends every older secret unless it grants the one it
replaces a grace period; a secret in its grace period calls the data plane but manages nothing
(API and dashboard); and once it ends it is as unknown as a key never issued, to the byte."""

from __future__ import annotations

import time

import httpx

from aitbc_contracts.keyformat import generate_key
from tests.e2e.dashboard import Dashboard
from tests.e2e.stack import Stack
from tests.e2e.test_keys_flow import WINDOW, first_refusal, new_key


def regenerate(api: httpx.Client, master: str, key_id: str, grace: int) -> str:
    response = api.post(
        f"/v1/api-keys/{key_id}/regenerate",
        json={"grace_period_seconds": grace},
        headers={"X-API-Key": master},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["key"])


def status(api: httpx.Client, key: str, path: str = "/v1/jobs") -> int:
    return api.get(path, headers={"X-API-Key": key}).status_code


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_a_second_regenerate_ends_the_first_ones_grace(
    api: httpx.Client, account: dict[str, str]
) -> None:
    created = new_key(api, account["master"])
    first = created["key"]
    assert status(api, first) == 200  # cached at the edge
    second = regenerate(api, account["master"], created["key_id"], grace=3600)
    assert status(api, first) == status(api, second) == 200
    third = regenerate(api, account["master"], created["key_id"], grace=0)  # after a leak
    assert error(api.get("/v1/jobs", headers={"X-API-Key": first})) == (401, "INVALID_API_KEY")
    assert error(api.get("/v1/jobs", headers={"X-API-Key": second})) == (401, "INVALID_API_KEY")
    assert status(api, third) == 200


def test_a_master_key_in_its_grace_period_calls_the_data_plane_but_manages_nothing(
    api: httpx.Client, account: dict[str, str]
) -> None:
    old = account["master"]
    standard = new_key(api, old)
    new = regenerate(api, old, account["master_key_id"], grace=3600)
    assert status(api, old) == 200  # the data plane: what the grace period is for
    for method, path in [
        ("GET", "/v1/api-keys"),
        ("POST", "/v1/api-keys"),
        ("DELETE", f"/v1/api-keys/{standard['key_id']}"),
        ("POST", f"/v1/api-keys/{account['master_key_id']}/regenerate"),
    ]:
        refused = api.request(method, path, json={"name": "x"}, headers={"X-API-Key": old})
        assert error(refused) == (403, "MASTER_KEY_IN_GRACE"), (method, path, refused.text)
    assert status(api, new, "/v1/api-keys") == 200
    assert status(api, standard["key"]) == 200  # the refused revocation changed nothing
    listed = api.get("/v1/api-keys", headers={"X-API-Key": new}).json()["keys"]
    assert [k["name"] for k in listed] == ["master", "worker"]


def test_the_dashboard_refuses_a_master_key_in_its_grace_period(stack: Stack) -> None:
    before = Dashboard(stack.api_url)  # signed in with the secret that is then replaced
    old = before.sign_up()
    assert before.get("/dashboard/keys").status_code == 200
    with httpx.Client(base_url=stack.api_url, timeout=10) as api:
        master_id = api.get("/v1/api-keys", headers={"X-API-Key": old}).json()["keys"][0]
        regenerate(api, old, master_id["key_id"], grace=3600)
    page = before.get("/dashboard/keys", follow_redirects=True)
    assert "MASTER_KEY_IN_GRACE" in page.text or "grace period" in page.text, page.text
    assert before.get("/dashboard/keys").status_code != 200  # the session ended
    after = Dashboard(stack.api_url)
    refused = after.sign_in(old)
    assert refused.status_code == 403 and "MASTER_KEY_IN_GRACE" in refused.text


def test_a_replaced_secret_answers_exactly_as_a_key_never_issued(
    api: httpx.Client, account: dict[str, str]
) -> None:
    created = new_key(api, account["master"])
    asked = time.time()
    regenerate(api, account["master"], created["key_id"], grace=WINDOW)
    late = first_refusal(api, created["key"], not_before=asked + WINDOW)  # cached, then ended
    again = api.get("/v1/jobs", headers={"X-API-Key": created["key"]})
    never = api.get("/v1/jobs", headers={"X-API-Key": generate_key()})
    malformed = api.get("/v1/jobs", headers={"X-API-Key": "aitbc_" + "x" * 49})
    assert late.status_code == again.status_code == never.status_code == 401
    assert late.content == again.content == never.content == malformed.content
    assert never.json() == {
        "error": {"code": "INVALID_API_KEY", "message": "The provided API key is invalid"}
    }
