"""LOG_FORMAT=json, as every process of a whole system writes it: each line of each service's
log is one JSON object with the fields, a request's lines carry its id in the edge and in the
keys service, and no key, hash of one or query string is in any of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aitbc_contracts.keyformat import hash_key
from tests.e2e.stack import Stack
from tests.key_scan import plaintext_keys

FIELDS = {"time", "level", "service", "logger", "message", "request_id", "trace_id"}
SERVICES = {
    "keys": "aitbc-keys",
    "usage": "aitbc-usage",
    "coordinator": "aitbc-sample-coordinator",
    "api": "aitbc-api",
}
UNKNOWN_KEY_ID = "key_0000000000000000"


@pytest.fixture(scope="module")
def json_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    system = Stack(tmp_path_factory.mktemp("json-logs"), extra_env={"LOG_FORMAT": "json"})
    try:
        yield system.start()
    finally:
        system.stop()


def requests_made(stack: Stack) -> tuple[set[str], str]:
    """A sign-up, a key made and used (by header and in the query string), a revocation of a
    key that does not exist under a request id of the client's; the secrets, and that id."""
    request_id = "json-logs-e2e-1"
    with httpx.Client(base_url=stack.api_url, timeout=10) as api:
        master = api.post("/v1/accounts", json={"name": "logs"}).json()["master_key"]["key"]
        made = api.post("/v1/api-keys", json={"name": "l"}, headers={"X-API-Key": master}).json()
        assert api.get("/v1/jobs", headers={"X-API-Key": made["key"]}).status_code == 200
        assert api.get("/v1/jobs", params={"api_key": made["key"]}).status_code == 200
        refused = api.delete(
            f"/v1/api-keys/{UNKNOWN_KEY_ID}",
            headers={"X-API-Key": master, "X-Request-Id": request_id},
        )
        assert refused.status_code == 404
    return {master, made["key"]}, request_id


def entries(log_file: Path) -> list[dict[str, object]]:
    """Every line of a log, each of which must be a JSON object with the fields."""
    found = []
    for number, line in enumerate(log_file.read_text().splitlines(), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"{log_file.name}:{number} is not JSON: {line!r}")
        assert isinstance(entry, dict) and set(entry) >= FIELDS, f"{log_file.name}:{number}"
        found.append(entry)
    return found


def test_every_line_is_json_with_the_request_id_and_no_secret(json_stack: Stack) -> None:
    secrets, request_id = requests_made(json_stack)
    json_stack.stop()  # every line written, the stop's as well
    logged = {name: entries(json_stack.processes[name].log_file) for name in SERVICES}
    for name, lines in logged.items():
        assert lines, f"{name} logged nothing"
        assert {line["service"] for line in lines} == {SERVICES[name]}
    edge_loggers = {line["logger"] for line in logged["api"]}
    assert {"aitbc.api.access", "uvicorn"} <= edge_loggers  # uvicorn's own lines too

    access = [line for line in logged["api"] if line["logger"] == "aitbc.api.access"]
    [refusal] = [line for line in access if line["request_id"] == request_id]
    assert f"DELETE /v1/api-keys/{UNKNOWN_KEY_ID} 404" in str(refusal["message"])
    assert all(line["request_id"] for line in access)
    in_keys = [line for line in logged["keys"] if line["request_id"] == request_id]
    assert in_keys and "refused" in str(in_keys[0]["message"])  # the command's own id

    everything = "\n".join(f.read_text() for f in json_stack.root.glob("*.log"))
    assert plaintext_keys(everything) == set()
    for secret in secrets:
        assert secret not in everything and hash_key(secret) not in everything
    assert "api_key=" not in everything  # the access log has the path, not the query
