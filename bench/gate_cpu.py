"""The gate's CPU per request, measured in this process: GateMiddleware around a bare ASGI app
(a 200 with a two-byte body), on the run's bus with the edge's role, called with the load keys
in turn; and the bare app alone, the floor subtracted. Rounds alternate the two.

CPU time (time.process_time) per request, not a rate: other processes on a shared host slow a
rate down but leave this process's CPU per request almost as it is, so the figure moves by
tenths of a microsecond where E/A moves by tenths of itself. Everything the gate does for a
request is in it: the request layer, the key's digest and cached facts, the lease, the
rate-limit headers, the usage record (and its spool's copy), and the background work that
follows (usage batches published, leases renewed), which runs on this event loop between
requests as it does in a server's. What a server spends on the gate's seven response headers
is not: E's profile (section 6a) has the server's part.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from aitbc_gate import GateMiddleware, GateSettings
from aitbc_gate.types import Message, Scope
from bench.common import median, say
from bench.config import PLAN_LIMITS
from bench.state import Bench

REQUESTS = 20_000  # per round and per side
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2")]
_BODY = {"type": "http.response.body", "body": b"{}"}


async def bare_app(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": list(_HEADERS)})
    await send(_BODY)


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Message) -> None:
    return None


def _scope(key: bytes) -> Scope:
    """What uvicorn gives an app for wrk's `GET /v1/jobs` with a key."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
        "method": "GET", "path": "/v1/jobs", "raw_path": b"/v1/jobs", "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"x-api-key", key), (b"accept", b"*/*")],
        "state": {},
    }  # fmt: skip


async def _us_per_request(app: Any, keys: list[bytes]) -> float:
    """Microseconds of this process's CPU per request, over REQUESTS requests; the event loop
    gets a turn after each, as a server's would."""
    started = time.process_time()
    for i in range(REQUESTS):
        await app(_scope(keys[i % len(keys)]), _receive, _discard)
        await asyncio.sleep(0)
    return (time.process_time() - started) / REQUESTS * 1e6


async def _statuses(app: Any, keys: list[bytes]) -> set[int]:
    """Every key once (its facts cached, its account's lease taken): the statuses answered."""
    seen: set[int] = set()

    async def note(message: Message) -> None:
        if message["type"] == "http.response.start":
            seen.add(message["status"])

    for key in keys:
        await app(_scope(key), _receive, note)
    return seen


async def gate_cpu(b: Bench) -> None:
    assert b.seeded is not None
    keys = [key.encode() for _, key in b.seeded.load_keys()]
    limits = tuple((plan, int(n)) for plan, n in (p.split("=") for p in PLAN_LIMITS.split(",")))
    settings = GateSettings(
        nats=b.stack.layout.access("edge"),
        plan_limits=limits,
        usage_spool_dir=str(b.root / "gate-cpu.usage-spool"),  # as scenario E's gate has one
    )
    gated = GateMiddleware(bare_app, settings, name="bench-gate-cpu")
    rounds = max(3, b.config.rounds)
    say(f"gate CPU: {rounds} rounds of {REQUESTS:,} requests, bare app and gated, in process")
    await gated.start()
    try:
        if (statuses := await _statuses(gated, keys)) != {200}:
            raise RuntimeError(f"the gate answered {statuses} to the load keys")
        await _us_per_request(gated, keys)  # warm
        gc.collect()
        bare, with_gate = [], []
        for _ in range(rounds):
            bare.append(await _us_per_request(bare_app, keys))
            with_gate.append(await _us_per_request(gated, keys))
    finally:
        await gated.stop()
    per_round = [g - a for g, a in zip(with_gate, bare, strict=True)]
    b.results["gate_cpu"] = {
        "requests_per_round": REQUESTS,
        "keys": len(keys),
        "bare_us": median(bare),
        "gated_us": median(with_gate),
        "gate_us": median(per_round),
        "per_round_gate_us": per_round,
    }
    say(f"gate CPU: {median(per_round):.2f} us per request (bare app {median(bare):.2f} us)")
