"""Edge phases: revocation propagation across two edges and the gated Coordinator, and edge
memory per cached key."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench import revocation
from bench.common import edge_metrics, percentile, say
from bench.httpclient import Connection, build_request, fan_out
from bench.stack import Proc
from bench.state import Bench


async def revocations(b: Bench) -> None:
    """A key in use on two edges and on the gated Coordinator, revoked through the first edge
    (which sends the command to the keys service): the other edge and the gated Coordinator
    learn it from the key event stream."""
    assert b.seeded is not None
    second = b.stack.procs["edge2"]
    await _until_healthy(b, second)
    account = b.seeded.revoke
    keys = account.keys[: b.config.revocations]
    say(f"revocations: {len(keys)} keys, each in use on two edges and the gated Coordinator")
    servers = [b.edge.url, second.url, b.gated.url]
    per_server = await revocation.revocations(servers, keys, account.master_key)
    times = dict(zip(("revoking edge", "other edge", "gated Coordinator"), per_server, strict=True))
    b.results["revocation"] = {
        "revocations": len(keys),
        "timed_from": "request",  # not the response: what reaches an edge before it counts
        "edges": [_spread(name, times[name]) for name in ("revoking edge", "other edge")],
        "gated_coordinator": _spread("gated Coordinator", times["gated Coordinator"]),
    }
    b.stack.stop("edge2")
    e, g = b.results["revocation"]["edges"], b.results["revocation"]["gated_coordinator"]
    say(
        f"revocation p99: revoking edge {e[0]['p99_ms']:.1f} ms, other {e[1]['p99_ms']:.1f} ms, "
        f"gated Coordinator {g['p99_ms']:.1f} ms"
    )


def _spread(name: str, ms: list[float]) -> dict[str, Any]:
    return {
        "edge": name,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "min_ms": min(ms),
        "all_ms": ms,
    }


async def _until_healthy(b: Bench, edge: Proc) -> None:
    connection = Connection.to(edge.url)
    try:
        for _ in range(200):
            if await connection.send(build_request(edge.url + "/v1/health")) == 200:
                return
            await asyncio.sleep(0.05)
    finally:
        connection.close()
    raise RuntimeError(f"{edge.name} never became healthy")


async def _buffered(b: Bench, edge: Proc) -> int:
    """The edge's own gauge of usage events not yet published."""
    metrics = await edge_metrics(edge)
    if "aitbc_usage_events_buffered" not in metrics:
        raise RuntimeError("no usage buffer gauge in the edge's /metrics")
    return int(metrics["aitbc_usage_events_buffered"])


async def _settle(b: Bench, edge: Proc) -> None:
    for _ in range(600):
        if await _buffered(b, edge) == 0:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)


async def edge_memory(b: Bench) -> None:
    """A fresh edge caches every bulk key: one authenticated request each, on a route that
    answers after the gate without going upstream (GET /v1/api-keys/<not an id>: the master
    key is authenticated, given a rate-limit decision and a usage event, then 404)."""
    assert b.seeded is not None
    edge = b.stack.procs["edge-memory"]
    await _until_healthy(b, edge)
    url = edge.url + "/v1/api-keys/none"
    one = b.seeded.revoke.master_key
    warm = [build_request(url, {"X-API-Key": one})] * (300 if b.config.quick else 2_000)
    await fan_out(edge.url, warm, 32)  # steady state: pools, buffers, arenas
    await _settle(b, edge)
    before = edge.rss_kib()
    keys = [a.master_key for a in b.seeded.bulk]
    say(f"edge memory: caching {len(keys):,} keys through a fresh edge")
    t = time.perf_counter()
    statuses = await fan_out(edge.url, [build_request(url, {"X-API-Key": k}) for k in keys], 32)
    fill_seconds = time.perf_counter() - t
    await _settle(b, edge)
    after = edge.rss_kib()
    if statuses.get(404, 0) != len(keys):
        raise RuntimeError(f"filling the edge's cache: {statuses}")
    b.results["edge_memory"] = {
        "keys": len(keys),
        "rss_kib": [before, after],
        "bytes_per_key": (after - before) * 1024 / len(keys),
        "fill_seconds": fill_seconds,
        "fill_rps_cache_misses": len(keys) / fill_seconds,
    }
    b.stack.stop("edge-memory")
    say(f"edge memory: {(after - before) * 1024 / len(keys):.0f} B/key")
