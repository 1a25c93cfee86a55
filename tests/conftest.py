"""Shared fixtures: a real nats-server per test session, and the databases to test against."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aitbc_infra.bus_config import BusCredentials
from aitbc_infra.nats_server import PORT_RANGE, NatsServer, free_port
from aitbc_runtime.scratch_database import ScratchDatabase
from tests import postgres


def _print_pending_tasks() -> None:
    """Every pending asyncio task's stack, on stderr (the failed test's captured output)."""
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    print(f"+++ {len(tasks)} pending asyncio tasks, a moment before the timeout", file=sys.stderr)
    for task in tasks:
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)


_task_dumps: dict[str, threading.Timer] = {}


def pytest_timeout_set_timer(item: pytest.Item, settings: object) -> None:
    """pytest-timeout prints the threads' stacks only, and a hung test is an event loop's
    tasks waiting on each other: print those a few seconds before it fails the test."""
    timeout = float(getattr(settings, "timeout", 0) or 0)
    if timeout > 5:
        timer = threading.Timer(timeout - 3, _print_pending_tasks)
        timer.daemon = True
        timer.start()
        _task_dumps[item.nodeid] = timer


def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    timer = _task_dumps.pop(item.nodeid, None)
    if timer is not None:
        timer.cancel()


def pytest_configure(config: pytest.Config) -> None:
    """Each test worker (pytest-xdist: gw0, gw1, ...) takes its ports from a range of its own,
    20000-31999 in slices of 1500, under the kernel's ephemeral ports (32768 and up)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and int(worker[2:]) < 8:
        low = 20_000 + 1_500 * int(worker[2:])
        os.environ.setdefault(PORT_RANGE, f"{low}-{low + 1_499}")


def secured_nats(root: Path) -> NatsServer:
    """A nats-server in `root` with the real configuration: the roles' users and permissions."""
    credentials = BusCredentials(root / "creds")
    return NatsServer(free_port(), root / "js", log_file=root / "nats.log", credentials=credentials)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server process with JetStream on a free port, for the whole session, requiring
    the roles' credentials as `just up`'s does (`server.access(role)`, `server.options(role)`)."""
    root = tmp_path_factory.mktemp("nats")
    server = secured_nats(root).start()
    yield server
    server.stop()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own, for tests of streams whose names the contract fixes."""
    server = secured_nats(tmp_path).start()
    yield server
    server.stop()


def _docker_reachable() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """PostgreSQL at TEST_POSTGRES_URL (default 127.0.0.1:5432); where none answers and no URL
    was given, a testcontainer if Docker runs; else the test is skipped, or failed where
    AITBC_REQUIRE_POSTGRES=1 (tests/postgres.py)."""
    url = postgres.server_url()
    if postgres.reachable(url):
        yield url
        return
    if not postgres.url_given() and _docker_reachable():
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()
        return
    postgres.absent(f"no PostgreSQL reachable at {postgres.where(url)} (TEST_POSTGRES_URL)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, and a new PostgreSQL database where one runs."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
        return
    database = ScratchDatabase(request.getfixturevalue("postgres_server_url"), "aitbc_test")
    await database.create()
    try:
        yield database.url
    finally:
        await database.drop()
