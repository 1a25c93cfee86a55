"""The forwarded path: what may go upstream as sent, and what is refused with INVALID_PATH."""

from __future__ import annotations

import pytest

from aitbc_api.proxy.paths import forwarded_path
from aitbc_gate.errors import ApiError


@pytest.mark.parametrize(
    "raw",
    [
        b"/v1/jobs",
        b"/v1/jobs/job_0a1b2c3d/results",
        b"/v1/jobs/job%5Fx",  # an encoded character that is no separator: kept as sent
        b"/v1/jobs/a%20b",
        b"/v1/jobs/.hidden/x..y/...",  # dots inside a name are a name
        b"/v1/",
    ],
)
def test_a_path_under_v1_goes_upstream_byte_for_byte(raw: bytes) -> None:
    assert forwarded_path(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        b"/v1/..",
        b"/v1/jobs/../../schema",
        b"/v1/./jobs",
        b"/v1/jobs/.",
        b"/v1/jobs/%2e%2e/%2E%2E/schema",
        b"/v1/jobs/.%2e/schema",
        b"/v1/jobs/%2e",
        b"/v1/jobs/..%2fschema",
        b"/v1/jobs%2F..",
        b"/v1/jobs/%5c..",
        b"/v1/jobs/\\..\\schema",
        b"/v1/jobs%3f/../x",
        b"/v1/jobs%23x",
        b"/v1/jobs/%252e%252e/schema",  # double encoding: %2e%2e to a second decoder
        b"/v1/jobs/%00",
        b"/v1/jobs/%7f",
        b"/v2/jobs",  # not under the prefix at all
        b"/v1",
        b"/v1/jobs/\xc3\xa9",
    ],
)
def test_a_path_that_could_leave_v1_is_refused(raw: bytes) -> None:
    with pytest.raises(ApiError) as refused:
        forwarded_path(raw)
    assert (refused.value.status, refused.value.code) == (400, "INVALID_PATH")
    assert refused.value.message
