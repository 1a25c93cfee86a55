"""Open-loop load at a fixed rate, the measurement wrk2 makes (plain wrk has no `-R`).

`python -m bench.paced URL --rate R --duration S [--header NAME --values FILE]` sends request i
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


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def paced(
    url: str, requests: list[bytes], rate: float, duration: float, connections: int
) -> dict[str, Any]:
    clock = time.perf_counter
    idle: deque[Connection] = deque(Connection.to(url) for _ in range(connections))
    backlog: deque[tuple[float, bytes]] = deque()
    scheduled_ms: list[float] = []
    wire_ms: list[float] = []
    statuses: dict[int, int] = {}
    total = int(rate * duration)
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    def launch(connection: Connection, due: float, request: bytes) -> None:
        task = loop.create_task(fire(connection, due, request))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def fire(connection: Connection, due: float, request: bytes) -> None:
        while True:
            sent = clock()
            status = await connection.send(request)
            done = clock()
            scheduled_ms.append((done - due) * 1000)
            wire_ms.append((done - sent) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if not backlog:
                idle.append(connection)
                return
            due, request = backlog.popleft()

    # open the connections first: connection setup is not what is measured
    for connection in list(idle):
        await connection.send(requests[0])
    start = clock() + 0.01
    issued = 0
    while issued < total:
        now = clock()
        due_count = min(total, int((now - start) * rate) + 1)
        while issued < due_count:
            due = start + issued / rate
            request = requests[issued % len(requests)]
            if idle:
                launch(idle.popleft(), due, request)
            else:
                backlog.append((due, request))
            issued += 1
        # At least a millisecond: the loop's timers have that granularity, and a shorter sleep
        # is a busy wait that took the load generator most of a core (the requests due
        # meanwhile go out together at the next wake, each timed from its own schedule).
        await asyncio.sleep(max(0.001, start + issued / rate - clock()))
    while tasks or backlog:
        await asyncio.sleep(0.01)
    elapsed = clock() - start
    for connection in idle:
        connection.close()
    scheduled_ms.sort()
    wire_ms.sort()
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--header")
    parser.add_argument("--values", type=Path)
    args = parser.parse_args()
    if args.header:
        values = args.values.read_text().split()
        requests = [build_request(args.url, {args.header: value}) for value in values]
    else:
        requests = [build_request(args.url)]
    gc.disable()  # a collection in the load generator would show up as server latency
    result = uvloop.run(paced(args.url, requests, args.rate, args.duration, args.connections))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
