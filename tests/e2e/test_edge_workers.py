"""API_WORKERS: one edge port served by several processes (aitbc_api.workers). Each worker is
an edge of its own, so an account's limit holds across them exactly as across edges; their
metrics are summed on the one operators' port; a stop ends them all."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aitbc_contracts.usage import WINDOW_SECONDS
from tests.e2e.stack import Process, Stack
from tests.scrape import value

LIMIT = 60  # the free plan's, a minute
WORKERS = 2


@pytest.fixture(scope="module")
def workers(stack: Stack) -> Iterator[Process]:
    process = stack.add_edge("api-workers", API_WORKERS=str(WORKERS)).start()
    yield process
    process.stop()


def _pids(process: Process) -> set[str]:
    return set(re.findall(r"Started server process \[(\d+)\]", process.log_file.read_text()))


def _live_pids(process: Process) -> set[str]:
    """The workers started and not replaced (the supervisor replaces one that dies)."""
    died = re.findall(r"Child process \[(\d+)\] died", process.log_file.read_text())
    return _pids(process) - set(died)


def test_the_workers_share_one_port_and_an_accounts_limit_exactly(
    stack: Stack, workers: Process
) -> None:
    deadline = time.monotonic() + 30
    while len(_pids(workers)) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_pids(workers)) == WORKERS, workers.log_file.read_text()[-2000:]
    with httpx.Client(base_url=workers.url, timeout=10) as api:
        key = api.post("/v1/accounts").json()["master_key"]["key"]
    if time.time() % WINDOW_SECONDS > WINDOW_SECONDS - 20:  # all in one minute
        time.sleep(WINDOW_SECONDS - time.time() % WINDOW_SECONDS + 0.5)
    statuses = []
    for _ in range(LIMIT + 10):  # a connection each: the kernel spreads them over the workers
        with httpx.Client(base_url=workers.url, timeout=10) as client:
            statuses.append(client.get("/v1/jobs", headers={"X-API-Key": key}).status_code)
    assert statuses.count(200) == LIMIT, statuses
    assert statuses.count(429) == 10, statuses


def test_the_workers_metrics_are_summed_on_one_port(stack: Stack, workers: Process) -> None:
    def answered() -> float:
        text = stack.metrics("api-workers")
        return value(text, "aitbc_http_request_duration_seconds_count", method="GET")

    before = answered()
    for _ in range(40):
        with httpx.Client(base_url=workers.url, timeout=10) as client:
            assert client.get("/v1/health").status_code == 200
    assert answered() - before == 40  # whichever worker answered each, and served /metrics
    # Both answered requests (this test's and the one before's): each wrote its own counts.
    folder = Path(tempfile.gettempdir()) / f"aitbc-api-metrics-{workers.pid}"
    writers = {path.stem.rsplit("_", 1)[1] for path in folder.glob("histogram_*.db")}
    live = _live_pids(workers)
    assert len(live) == WORKERS and live <= writers, (live, sorted(folder.iterdir()))


def test_every_workers_counts_and_gauges_reach_the_one_port(stack: Stack, workers: Process) -> None:
    """What a worker counts in plain ints (decisions, the auth cache) and what a gauge reads
    from a function (edges alive) reach the sums too, not only prometheus_client's own."""

    def counted() -> tuple[float, float, float]:
        text = stack.metrics("api-workers")
        return (
            value(text, "aitbc_ratelimit_decisions_total", outcome="admitted"),
            value(text, "aitbc_auth_cache_total"),
            value(text, "aitbc_edges_alive"),
        )

    with httpx.Client(base_url=workers.url, timeout=10) as api:
        key = api.post("/v1/accounts").json()["master_key"]["key"]
    decided, looked_up, _ = counted()
    for _ in range(20):  # a connection each: both workers answer some
        with httpx.Client(base_url=workers.url, timeout=10) as client:
            assert client.get("/v1/jobs", headers={"X-API-Key": key}).status_code == 200
    deadline = time.monotonic() + 10  # each worker copies its counts in once a second
    while counted()[:2] != (decided + 20, looked_up + 20) and time.monotonic() < deadline:
        time.sleep(0.2)
    now = counted()
    assert now[:2] == (decided + 20, looked_up + 20), now
    assert now[2] >= WORKERS  # each worker is an edge, and sees the other


def test_a_stop_ends_every_worker(stack: Stack) -> None:
    process = stack.add_edge("api-workers-stopped", API_WORKERS=str(WORKERS)).start()
    deadline = time.monotonic() + 30
    while len(_pids(process)) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.2)
    pids = _pids(process)
    process.stop()
    time.sleep(0.5)
    alive = [pid for pid in pids if _alive(int(pid))]
    assert alive == [], f"workers left running: {alive}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
