"""What each kind of key may call and read: an account may keep its master key to managing keys
(or the edge every master key, MASTER_KEY_DATA_PLANE=0), and an edge may keep standard keys from
reading the whole account's usage (STANDARD_KEY_USAGE)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.e2e.stack import Stack
from tests.e2e.test_keys_flow import new_key


def code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def set_data_plane(api: httpx.Client, master: str, on: object) -> httpx.Response:
    return api.patch(
        "/v1/account", json={"master_key_data_plane": on}, headers={"X-API-Key": master}
    )


def test_an_owner_keeps_the_master_key_to_managing_keys(
    api: httpx.Client, account: dict[str, str]
) -> None:
    master = {"X-API-Key": account["master"]}
    standard = new_key(api, account["master"])
    assert api.get("/v1/jobs", headers=master).status_code == 200  # cached at the edge
    shown = api.get("/v1/account", headers=master).json()
    assert (shown["account_id"], shown["master_key_data_plane"]) == (account["account_id"], True)

    changed = set_data_plane(api, account["master"], False)
    assert changed.status_code == 200 and changed.json()["master_key_data_plane"] is False
    for method, path in [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/job_x")]:
        refused = api.request(method, path, json={"model": "m", "input": 1}, headers=master)
        assert code(refused) == (403, "MASTER_KEY_MANAGEMENT_ONLY"), (method, path)
    assert api.get("/v1/api-keys", headers=master).status_code == 200  # it still manages
    assert api.get("/v1/usage", headers=master).status_code == 200
    assert api.get("/v1/jobs", headers={"X-API-Key": standard["key"]}).status_code == 200
    assert api.get("/v1/health").status_code == 200  # public routes take no key at all

    assert code(set_data_plane(api, standard["key"], True)) == (403, "FORBIDDEN")
    assert code(set_data_plane(api, account["master"], "yes")) == (400, "VALIDATION_ERROR")
    assert set_data_plane(api, account["master"], True).status_code == 200
    assert api.get("/v1/jobs", headers=master).status_code == 200


@contextmanager
def edge(stack: Stack, name: str, **env: str) -> Iterator[httpx.Client]:
    process = stack.add_edge(name, **env).start()
    try:
        with httpx.Client(base_url=process.url, timeout=10) as client:
            yield client
    finally:
        process.stop()


def test_an_edge_keeps_master_keys_off_the_data_plane_and_standard_keys_to_their_usage(
    stack: Stack, api: httpx.Client, account: dict[str, str]
) -> None:
    master = {"X-API-Key": account["master"]}
    standard = new_key(api, account["master"])
    mine = {"X-API-Key": standard["key"]}
    whole = api.get("/v1/usage", headers=mine)  # the default edge: the account's usage
    assert whole.status_code == 200 and whole.json()["key_id"] is None

    with edge(stack, "api-scoped", MASTER_KEY_DATA_PLANE="0", STANDARD_KEY_USAGE="own") as scoped:
        assert code(scoped.get("/v1/jobs", headers=master)) == (403, "MASTER_KEY_MANAGEMENT_ONLY")
        assert scoped.get("/v1/api-keys", headers=master).status_code == 200
        assert scoped.get("/v1/jobs", headers=mine).status_code == 200
        own = scoped.get("/v1/usage", headers=mine)
        assert own.status_code == 200 and own.json()["key_id"] == standard["key_id"], own.text
        asked = scoped.get("/v1/usage", params={"key_id": standard["key_id"]}, headers=mine)
        assert asked.status_code == 200
        others = scoped.get("/v1/usage", params={"key_id": account["master_key_id"]}, headers=mine)
        assert code(others) == (403, "FORBIDDEN")
        by_master = scoped.get("/v1/usage", headers=master)
        assert by_master.status_code == 200 and by_master.json()["key_id"] is None

    with edge(stack, "api-no-usage", STANDARD_KEY_USAGE="none") as closed:
        assert code(closed.get("/v1/usage", headers=mine)) == (403, "FORBIDDEN")
        assert closed.get("/v1/usage", headers=master).status_code == 200
        assert closed.get("/v1/jobs", headers=master).status_code == 200
