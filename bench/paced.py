"""Open-loop load at a fixed rate, the measurement wrk2 makes (plain wrk has no `-R`).

`python -m bench.paced URL --rate R --duration S [--header NAME[,NAME...] --values FILE]` (a
request per line of FILE, with the headers' values separated by tabs) sends request i
at start + i/R whatever happened to the ones before, over a pool of keep-alive connections, and
prints one JSON line. Latency is measured two ways: from the request's scheduled time (wrk2's
coordinated-omission correction: a request that waited for a free connection, or for the
event loop's millisecond timer, counts that wait) and on the wire (write to last byte).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections import deque
from pathlib import Path
from typing import Any

import uvloop

from bench.httpclient import Connection, build_request

CLOCK = time.perf_counter


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


class Pacer:
    """Requests at their scheduled times over a pool of keep-alive connections: a request due
    while every connection is busy waits in the backlog for the first one free."""

    def __init__(self, url: str, requests: list[bytes], connections: int) -> None:
        self.requests = requests
        self.idle: deque[Connection] = deque(Connection.to(url) for _ in range(connections))
        self.backlog: deque[tuple[float, bytes]] = deque()
        self.scheduled_ms: list[float] = []
        self.wire_ms: list[float] = []
        self.statuses: dict[int, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """Opens the connections first: connection setup is not what is measured."""
        for connection in list(self.idle):
            await connection.send(self.requests[0])

    def _launch(self, connection: Connection, due: float, request: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._fire(connection, due, request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _fire(self, connection: Connection, due: float, request: bytes) -> None:
        while True:
            sent = CLOCK()
            status = await connection.send(request)
            done = CLOCK()
            self.scheduled_ms.append((done - due) * 1000)
            self.wire_ms.append((done - sent) * 1000)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if not self.backlog:
                self.idle.append(connection)
                return
            due, request = self.backlog.popleft()

    async def issue(self, start: float, rate: float, total: int) -> None:
        """Request i at `start` + i/`rate`, for `total` requests."""
        issued = 0
        while issued < total:
            due_count = min(total, int((CLOCK() - start) * rate) + 1)
            while issued < due_count:
                due = start + issued / rate
                request = self.requests[issued % len(self.requests)]
                if self.idle:
                    self._launch(self.idle.popleft(), due, request)
                else:
                    self.backlog.append((due, request))
                issued += 1
            # At least a millisecond: the loop's timers have that granularity, and a shorter
            # sleep is a busy wait that took the load generator most of a core (the requests
            # due meanwhile go out together at the next wake, each timed from its own schedule).
            await asyncio.sleep(max(0.001, start + issued / rate - CLOCK()))

    async def drain(self) -> None:
        """Until every request issued has its response."""
        while self.tasks or self.backlog:
            await asyncio.sleep(0.01)
        for connection in self.idle:
            connection.close()

    def results(self, rate: float, elapsed: float) -> dict[str, Any]:
        scheduled_ms, wire_ms = sorted(self.scheduled_ms), sorted(self.wire_ms)
        ok = sum(n for status, n in self.statuses.items() if 200 <= status < 300)
        return {
            "rate": rate,
            "achieved_rate": len(wire_ms) / elapsed,
            "requests": len(wire_ms),
            "non_2xx": len(wire_ms) - ok,
            "p50_ms": percentile(scheduled_ms, 50),
            "p90_ms": percentile(scheduled_ms, 90),
            "p99_ms": percentile(scheduled_ms, 99),
            "p999_ms": percentile(scheduled_ms, 99.9),
            "max_ms": scheduled_ms[-1] if scheduled_ms else float("nan"),
            "wire_p50_ms": percentile(wire_ms, 50),
            "wire_p99_ms": percentile(wire_ms, 99),
            # every latency, to the microsecond: the caller pools its rounds (and drops these)
            "from_schedule_ms": [round(x, 3) for x in scheduled_ms],
        }


async def paced(
    url: str, requests: list[bytes], rate: float, duration: float, connections: int
) -> dict[str, Any]:
    pacer = Pacer(url, requests, connections)
    await pacer.open()
    start = CLOCK() + 0.01
    await pacer.issue(start, rate, int(rate * duration))
    await pacer.drain()
    return pacer.results(rate, CLOCK() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--header")
    parser.add_argument("--values", type=Path)
    args = parser.parse_args()
    if args.header:  # names, comma-separated; each line their values, tab-separated
        names = args.header.split(",")
        lines = args.values.read_text().splitlines()
        requests = [
            build_request(args.url, dict(zip(names, line.split("\t"), strict=True)))
            for line in lines
            if line
        ]
    else:
        requests = [build_request(args.url)]
    gc.disable()  # a collection in the load generator would show up as server latency
    result = uvloop.run(paced(args.url, requests, args.rate, args.duration, args.connections))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
