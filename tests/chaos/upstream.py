"""Slow and dead upstreams, and slow or oversized clients: the edge answers 504/502/408/413/431
with the error body, within bounded time, and its memory and connections stay bounded (the
clients that test its own limits: tests/chaos/edge_limits.py)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from aitbc_infra.processes import rss_kib
from tests.chaos.checks import record_usage
from tests.chaos.edge_limits import EDGE_LIMITS, connection_cap, slow_clients
from tests.chaos.load import Answer, Load, recovered_after, wait_for
from tests.chaos.report import Result
from tests.chaos.setup import edge, jobs, running_stack, scan_logs, sign_up, url_of, warm
from tests.e2e.stack import Stack

UPSTREAM_TIMEOUT = 1.0
BURST = 200


@contextmanager
def silent_upstream() -> Iterator[int]:
    """An upstream that accepts connections, reads requests, and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


async def _burst(url: str, key: str, n: int) -> list[Answer]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=20, limits=limits) as client:

        async def one(i: int) -> Answer:
            started = time.monotonic()
            try:
                r = await client.post("/v1/jobs", json={"n": i}, headers={"X-API-Key": key})
            except httpx.HTTPError as exc:
                return Answer("burst", None, started, time.monotonic(), 0, "", "", "", 0, repr(exc))
            code = r.json()["error"]["code"] if r.status_code >= 400 else ""
            return Answer(
                "burst", None, started, time.monotonic(), r.status_code, code,
                r.headers.get("x-request-id", ""), r.headers.get("x-ratelimit-mode", ""), 0,
            )  # fmt: skip

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def burst(result: Result, name: str, url: str, key: str, pid: int, expect: str) -> list[Answer]:
    """BURST concurrent requests; every one must get `expect`; memory and sockets measured."""
    rss_before, sockets_before = rss_kib(pid), sockets(pid)
    peak = [rss_before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_kib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    answers = asyncio.run(_burst(url, key, BURST))
    took = time.monotonic() - started
    done.set()
    sampler.join()
    wait_for(lambda: sockets(pid) <= sockets_before + 5, timeout=10)
    sockets_after = sockets(pid)
    growth = (peak[0] - rss_before) // 1024
    result.notes.append(
        f"{name}: {BURST} concurrent in {took:.1f}s, RSS {rss_before // 1024} MiB "
        f"+{growth} MiB at peak, sockets {sockets_before} -> {sockets_after}"
    )
    wrong = [a for a in answers if a.code != expect]
    result.expect(not wrong, f"{name}: {len(wrong)} not {expect}: {wrong[:1]}")
    result.expect(growth < 100, f"{name}: RSS grew {growth} MiB")
    result.expect(sockets_after <= sockets_before + 5, f"{name}: sockets left open")
    return answers


def _dead_upstream(
    result: Result, stack: Stack, key: str, key_id: str, answers: list[Answer]
) -> Load:
    """The Coordinator killed under load and restarted: 502 UPSTREAM_UNAVAILABLE while it is
    down (a burst's answers go to `answers`), served again soon after the restart."""
    coordinator = stack.processes["coordinator"]
    load = Load(stack.api_url).add("load", jobs(key), key_id, pause=0.02)
    with load.running():
        time.sleep(0.5)
        coordinator.stop(kill=True)
        down = time.monotonic()
        time.sleep(1.0)
        edge_pid = stack.processes["api"].pid
        answers += burst(
            result, "dead upstream", stack.api_url, key, edge_pid, "UPSTREAM_UNAVAILABLE"
        )
        up = time.monotonic()  # from the restart command to the first request served
        coordinator.start()
        result.recovery_seconds = recovered_after(
            up, lambda: any(a.started >= up and a.status == 200 for a in load.answers)
        )
        time.sleep(0.5)
    dead = load.of("load", down + 0.2, up)
    result.expect(
        bool(dead) and all(a.code == "UPSTREAM_UNAVAILABLE" for a in dead),
        f"dead upstream: {Counter(a.outcome for a in dead)}",
    )
    return load


def upstream_faults(root: Path) -> Result:
    result = Result("upstream")
    limits = {
        "PLAN_LIMITS": "free=1000000",
        "UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT),
        **EDGE_LIMITS,
    }
    with (
        silent_upstream() as silent_port,
        running_stack(root / "upstream", **limits) as stack,
        httpx.Client(base_url=stack.api_url, timeout=15) as api,
    ):
        slow = edge(stack, "api-slow", UPSTREAM_URL=f"http://127.0.0.1:{silent_port}")
        account = sign_up(api)
        key, key_id = account.new_key(api, "load")
        warm(api, key)
        answers: list[Answer] = []
        answers += burst(result, "slow upstream", url_of(slow), key, slow.pid, "UPSTREAM_TIMEOUT")
        load = _dead_upstream(result, stack, key, key_id, answers)
        answers += load.answers
        answers += slow_clients(result, slow.port or 0, key)
        connection_cap(result, slow.port or 0)
        result.count(answers)
        allowed = {"UPSTREAM_TIMEOUT", "UPSTREAM_UNAVAILABLE"}
        wrong = [a for a in answers if a.status >= 500 and a.code not in allowed]
        result.expect(not wrong, f"unexpected server errors: {wrong[:2]}")
        record_usage(result, stack, {account.account_id: [key_id]}, load.answers)
        scan_logs(result, stack, [account])
    return result
