"""The sample Coordinator's /v1/jobs contract, as a client behind the edge would see it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient, TestClient

from aitbc_contracts.identity import UpstreamIdentity, new_secret
from aitbc_coordinator.app import create_app

IDENTITY = UpstreamIdentity(new_secret())
NOW = 1_800_000_000.0  # the app's clock: the identities below are signed at it


def signed(account: str, key: str = "key_1", request_id: str = "req_1", at: float = NOW) -> dict:
    """The headers the edge sends for a caller: the identity and its signature."""
    return {
        "X-Account-Id": account,
        "X-Key-Id": key,
        "X-Request-Id": request_id,
        "X-AITBC-Identity": IDENTITY.sign(account, key, request_id, at),
    }


ALICE = signed("acc_alice")
BOB = signed("acc_bob")


def app(identity: UpstreamIdentity = IDENTITY) -> Any:
    return create_app(identity, clock=lambda: NOW)


@pytest.fixture
def client() -> Iterator[TestClient[Any]]:
    with TestClient(app()) as c:
        yield c


def new_job(
    client: TestClient[Any], headers: dict[str, str] = ALICE, **body: Any
) -> dict[str, Any]:
    response = client.post(
        "/v1/jobs", json={"model": "echo", "input": "hi", **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_health_needs_no_account(client: TestClient[Any]) -> None:
    response = client.get("/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_openapi_says_it_is_a_sample(client: TestClient[Any]) -> None:
    info = client.get("/schema/openapi.json").json()["info"]
    assert info["title"] == "AITBC Coordinator (sample)"


def test_a_new_job_is_queued_with_an_id_and_a_creation_time(client: TestClient[Any]) -> None:
    job = new_job(client, input={"prompt": "hello"}, params={"temperature": 0.2})
    assert job["id"].startswith("job_")
    assert job["status"] == "queued"
    assert job["model"] == "echo"
    assert job["input"] == {"prompt": "hello"}
    assert job["params"] == {"temperature": 0.2}
    assert job["created_at"]


def test_a_job_completes_when_first_fetched_and_its_result_echoes_the_input(
    client: TestClient[Any],
) -> None:
    job = new_job(client, input=[1, 2, 3])
    fetched = client.get(f"/v1/jobs/{job['id']}", headers=ALICE).json()
    assert fetched["status"] == "completed"
    assert fetched["completed_at"]
    results = client.get(f"/v1/jobs/{job['id']}/results", headers=ALICE)
    assert results.status_code == 200
    assert results.json()["job_id"] == job["id"]
    assert results.json()["status"] == "completed"
    assert results.json()["output"] == {"echo": [1, 2, 3]}


def test_results_can_be_read_straight_after_creation(client: TestClient[Any]) -> None:
    job = new_job(client)
    assert client.get(f"/v1/jobs/{job['id']}/results", headers=ALICE).json()["output"] == {
        "echo": "hi"
    }


def test_cancelling_a_queued_job(client: TestClient[Any]) -> None:
    job = new_job(client)
    response = client.delete(f"/v1/jobs/{job['id']}", headers=ALICE)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_at"]
    # it stays cancelled, cancelling again is harmless, and it has no results
    assert client.get(f"/v1/jobs/{job['id']}", headers=ALICE).json()["status"] == "cancelled"
    assert client.delete(f"/v1/jobs/{job['id']}", headers=ALICE).status_code == 200
    assert_error(client.get(f"/v1/jobs/{job['id']}/results", headers=ALICE), 409, "CONFLICT")


def test_a_completed_job_cannot_be_cancelled(client: TestClient[Any]) -> None:
    job = new_job(client)
    client.get(f"/v1/jobs/{job['id']}", headers=ALICE)
    assert_error(client.delete(f"/v1/jobs/{job['id']}", headers=ALICE), 409, "CONFLICT")


def test_listing_is_newest_first_and_pages(client: TestClient[Any]) -> None:
    ids = [new_job(client, input=i)["id"] for i in range(5)]
    page = client.get("/v1/jobs", params={"limit": 2, "offset": 1}, headers=ALICE).json()
    assert page["total"] == 5
    assert page["limit"] == 2
    assert page["offset"] == 1
    assert [job["id"] for job in page["jobs"]] == [ids[3], ids[2]]
    default = client.get("/v1/jobs", headers=ALICE).json()
    assert default["limit"] == 20 and default["offset"] == 0 and len(default["jobs"]) == 5
    beyond = client.get("/v1/jobs", params={"offset": 10}, headers=ALICE).json()
    assert beyond["jobs"] == [] and beyond["total"] == 5


def test_listing_filters_by_status(client: TestClient[Any]) -> None:
    done, cancelled, queued = (new_job(client)["id"] for _ in range(3))
    client.get(f"/v1/jobs/{done}", headers=ALICE)
    client.delete(f"/v1/jobs/{cancelled}", headers=ALICE)
    for status, expected in [("completed", done), ("cancelled", cancelled), ("queued", queued)]:
        page = client.get("/v1/jobs", params={"status": status}, headers=ALICE).json()
        assert [job["id"] for job in page["jobs"]] == [expected]
        assert page["total"] == 1


def test_jobs_are_scoped_by_account(client: TestClient[Any]) -> None:
    job = new_job(client, headers=ALICE)
    assert client.get("/v1/jobs", headers=BOB).json() == {
        "jobs": [],
        "total": 0,
        "limit": 20,
        "offset": 0,
    }
    for method, path in [
        ("GET", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/jobs/{job['id']}/results"),
        ("DELETE", f"/v1/jobs/{job['id']}"),
    ]:
        assert_error(client.request(method, path, headers=BOB), 404, "NOT_FOUND")
    # Bob's attempts changed nothing
    assert client.get(f"/v1/jobs/{job['id']}", headers=ALICE).json()["status"] == "completed"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/job_x"),
        ("DELETE", "/v1/jobs/job_x"),
        ("GET", "/v1/jobs/job_x/results"),
    ],
)
def test_every_job_route_needs_an_account(client: TestClient[Any], method: str, path: str) -> None:
    json = {"model": "echo"} if method == "POST" else None
    assert_error(client.request(method, path, json=json), 401, "MISSING_ACCOUNT")
    assert_error(
        client.request(method, path, json=json, headers={"X-Account-Id": " "}),
        401,
        "MISSING_ACCOUNT",
    )


def test_a_malformed_account_header_is_a_validation_error(client: TestClient[Any]) -> None:
    assert_error(
        client.get("/v1/jobs", headers={"X-Account-Id": "a" * 500}), 400, "VALIDATION_ERROR"
    )


def _forged() -> list[dict[str, str]]:
    """Identities the Coordinator must not believe, each with Alice's job there to take."""
    bare = {"X-Account-Id": "acc_alice"}
    other_secret = UpstreamIdentity(new_secret())
    return [
        bare,  # unsigned: what any workload on the network could send
        {**bare, "X-AITBC-Identity": ""},
        {**ALICE, "X-Account-Id": "acc_mallory"},  # Alice's signature, another account
        {**ALICE, "X-Key-Id": "key_2"},
        {**ALICE, "X-Request-Id": "req_2"},
        {**ALICE, "X-AITBC-Identity": other_secret.sign("acc_alice", "key_1", "req_1", NOW)},
        signed("acc_alice", at=NOW - 61),  # stale
        signed("acc_alice", at=NOW + 61),  # from the future
        {**ALICE, "X-AITBC-Identity": ALICE["X-AITBC-Identity"].replace("v1;", "v2;")},
        {**ALICE, "X-AITBC-Identity": ALICE["X-AITBC-Identity"].replace(";t=", ";t=+")},
        {**ALICE, "X-AITBC-Identity": ALICE["X-AITBC-Identity"][:-1]},
        {**ALICE, "X-AITBC-Identity": f"v1;t={NOW:.0f};sig=é".encode()},  # type: ignore[dict-item]
        {**ALICE, "X-AITBC-Identity": "nonsense"},
    ]


@pytest.mark.parametrize("headers", _forged())
def test_an_unsigned_forged_or_stale_identity_is_refused(
    client: TestClient[Any], headers: dict[str, str]
) -> None:
    job = new_job(client)
    for method, path in [("GET", "/v1/jobs"), ("GET", f"/v1/jobs/{job['id']}"),
                         ("DELETE", f"/v1/jobs/{job['id']}"), ("POST", "/v1/jobs")]:  # fmt: skip
        json = {"model": "echo"} if method == "POST" else None
        response = client.request(method, path, json=json, headers=headers)
        assert_error(response, 401, "INVALID_IDENTITY")
    assert client.get(f"/v1/jobs/{job['id']}", headers=ALICE).json()["status"] == "completed"
    assert client.get("/v1/jobs", headers=ALICE).json()["total"] == 1


def test_an_identity_within_a_minute_either_way_is_believed(client: TestClient[Any]) -> None:
    for at in (NOW - 60, NOW + 60, NOW - 0.5):
        assert client.get("/v1/jobs", headers=signed("acc_alice", at=at)).status_code == 200


def test_health_is_public() -> None:
    with TestClient(app(UpstreamIdentity(new_secret()))) as client:
        assert client.get("/v1/health").status_code == 200


def test_unknown_job_is_not_found(client: TestClient[Any]) -> None:
    assert_error(client.get("/v1/jobs/job_nope", headers=ALICE), 404, "NOT_FOUND")
    assert_error(client.get("/v1/nothing-here", headers=ALICE), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"offset": -1},
        {"status": "exploded"},
    ],
)
def test_bad_list_parameters_are_validation_errors(
    client: TestClient[Any], params: dict[str, Any]
) -> None:
    assert_error(client.get("/v1/jobs", params=params, headers=ALICE), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b"{}",
        b'{"model": ""}',
        b'{"model": 42}',
        b'{"model": "echo", "params": [1]}',
        b'{"model": "echo", "surprise": true}',
    ],
)
def test_bad_job_bodies_are_validation_errors(client: TestClient[Any], body: bytes) -> None:
    response = client.post(
        "/v1/jobs", content=body, headers={**ALICE, "Content-Type": "application/json"}
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert client.get("/v1/jobs", headers=ALICE).json()["total"] == 0


def test_a_wrong_method_is_answered_with_the_error_body(client: TestClient[Any]) -> None:
    response = client.put("/v1/jobs", json={}, headers=ALICE)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")


async def test_the_app_serves_async_clients_too() -> None:
    async with AsyncTestClient(app()) as client:
        created = await client.post("/v1/jobs", json={"model": "echo"}, headers=ALICE)
        assert created.status_code == 201
        job = await client.get(f"/v1/jobs/{created.json()['id']}", headers=ALICE)
        assert job.json()["status"] == "completed"
