"""Keys service down: cached keys keep working, uncached keys and management get 503, recovery."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from aitbc_contracts.keyformat import generate_key
from tests.e2e.stack import Stack


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    system = Stack(tmp_path_factory.mktemp("keys-down")).start()
    yield system
    system.stop()


def test_keys_service_outage(own_stack: Stack) -> None:
    with httpx.Client(base_url=own_stack.api_url, timeout=10) as api:
        master = api.post("/v1/accounts").json()["master_key"]["key"]
        made = api.post("/v1/api-keys", json={"name": "w"}, headers={"X-API-Key": master}).json()
        assert api.get("/v1/jobs", headers={"X-API-Key": master}).status_code == 200  # now cached

        own_stack.processes["keys"].stop(kill=True)
        cached = api.get("/v1/jobs", headers={"X-API-Key": master})
        assert cached.status_code == 200, cached.text
        for uncached in (made["key"], generate_key()):
            refused = api.get("/v1/jobs", headers={"X-API-Key": uncached})
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        managed = api.post("/v1/api-keys", json={"name": "x"}, headers={"X-API-Key": master})
        assert managed.status_code == 503
        assert api.post("/v1/accounts").status_code == 503

        own_stack.processes["keys"].start()
        deadline = time.monotonic() + 30  # a restart on a loaded machine: only a hang is slower
        while api.get("/v1/jobs", headers={"X-API-Key": made["key"]}).status_code != 200:
            assert time.monotonic() < deadline, "no recovery after the keys service came back"
            time.sleep(0.1)
