"""Schemathesis against the edge's own OpenAPI document: generated valid and invalid requests,
with a master key and with none, never get a 5xx, and every answer is what the document says
(status documented, content type, body schema, headers).

Bounded for CI: EXAMPLES per operation, mode and key, derandomized (the same every run).
The operations are read from the document the edge builds (aitbc_api.openapi, so that pytest
can list them before any process runs); a test checks the edge serves that very document.
"""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aitbc_api.openapi import document
from tests.e2e.stack import BIN, Stack

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = 25
SCHEMA = schemathesis.openapi.from_dict(document())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.fixture(scope="module")
def master(stack: Stack) -> str:
    """A master key on the enterprise plan: its limit leaves room for every generated call."""
    body = httpx.post(stack.api_url + "/v1/accounts", json={"name": "schemathesis"}).json()
    subprocess.run(
        [str(BIN / "aitbc"), "accounts", "set-plan", body["account_id"], "enterprise"],
        env={**stack.env(), "PATH": str(BIN)},
        check=True,
        capture_output=True,
        timeout=30,
    )
    return str(body["master_key"]["key"])


def test_the_edge_serves_the_document_tested(stack: Stack) -> None:
    served = httpx.get(stack.api_url + "/schema/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == document()
    assert len(OPERATIONS) >= 8


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("with_key", [True, False], ids=["master-key", "no-key"])
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_operation(
    operation: Any, with_key: bool, mode: GenerationMode, stack: Stack, master: str
) -> None:
    headers = {"X-API-Key": master} if with_key else {}

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(base_url=stack.api_url, headers=headers, checks=CHECKS, timeout=15)

    run()
