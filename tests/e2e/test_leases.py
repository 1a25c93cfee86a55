"""Leases through real edges: a plan of LEASE_MIN_LIMIT requests a minute is lent, and a client
still sees every request counted down, and exactly the limit admitted across edges."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from aitbc_contracts.usage import LEASE_MIN_LIMIT
from tests.e2e.stack import Stack
from tests.e2e.test_rate_limits import early_in_a_minute, headers_of, sign_up


@pytest.fixture(scope="module")
def lent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two edges of a stack whose free plan is lent."""
    root: Path = tmp_path_factory.mktemp("leases")
    # A renewal whose answer comes after USAGE_TIMEOUT is given up: the units it was lent count
    # as used until they fall due (never more admitted, some fewer). These tests count every
    # unit, so a loaded machine's slow answers must not be given up on.
    settings = {"PLAN_LIMITS": f"free={LEASE_MIN_LIMIT}", "USAGE_TIMEOUT": "5"}
    stack = Stack(root, extra_env=settings).start()
    second = stack.add_edge("api-second").start()
    try:
        yield [stack.api_url, second.url]
    finally:
        stack.stop()


def test_one_edge_counts_every_request_down_through_its_leases(lent: list[str]) -> None:
    with httpx.Client(base_url=lent[0], timeout=10) as api:
        _, key = sign_up(api)
        early_in_a_minute(margin=15)
        seen = []
        for _ in range(LEASE_MIN_LIMIT + 3):
            response = api.get("/v1/jobs", headers={"X-API-Key": key})
            seen.append((response.status_code, headers_of(response)[1]))
    assert [remaining for _, remaining in seen] == [*range(LEASE_MIN_LIMIT - 1, -1, -1), 0, 0, 0]
    assert [status for status, _ in seen] == [200] * LEASE_MIN_LIMIT + [429] * 3


def test_two_edges_admit_exactly_the_limit(lent: list[str]) -> None:
    edges = [httpx.Client(base_url=url, timeout=10) for url in lent]
    _, key = sign_up(edges[0])
    early_in_a_minute(margin=15)

    def call(i: int) -> tuple[int, int]:
        response = edges[i % 2].get("/v1/jobs", headers={"X-API-Key": key})
        return response.status_code, headers_of(response)[2]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(call, range(LEASE_MIN_LIMIT + 100)))
    statuses = [status for status, _ in answers]
    assert len({reset for _, reset in answers}) == 1  # all in one minute
    assert (statuses.count(200), statuses.count(429)) == (LEASE_MIN_LIMIT, 100)
    for edge in edges:
        edge.close()
