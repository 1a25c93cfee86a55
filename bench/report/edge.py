"""Sections 4 and 5 of the report: revocation propagation, and memory per key and account."""

from __future__ import annotations

from typing import Any

from bench.report.format import md_table

# Where a revocation's time starts. Results from before the field was written were timed from
# the revoke's response.
SINCE = {
    "response": "time from the revoke response to the first 401 each poller receives "
    "(negative: the 401 arrived before the revoke response did).",
    "request": "time from the moment the revoke request is sent to the first 401 each poller "
    "receives.",
}


def revocation_section(v: dict[str, Any]) -> list[str]:
    rows = [
        [e["edge"], f"{e['p50_ms']:.2f}", f"{e['p99_ms']:.2f}", f"{e['max_ms']:.2f}",
         f"{e['min_ms']:.2f}"]
        for e in v["edges"]
    ]  # fmt: skip
    return [
        "## 4. Revocation propagation",
        "",
        f"{v['revocations']} keys, each in use on two edges (a poller per edge sending it back "
        "to back); the owner revokes it with `DELETE /v1/api-keys/{id}` through the first "
        "edge; " + SINCE[v.get("timed_from", "response")],
        "",
        md_table(["edge", "p50 ms", "p99 ms", "max ms", "min ms"], rows),
        "",
    ]


def _edge_memory(e: dict[str, Any]) -> str:
    return (
        f"- **Edge: {e['bytes_per_key']:.0f} B per cached key.** A fresh edge, warmed with "
        f"requests on one key, then {e['keys']:,} requests with distinct keys on "
        "`GET /v1/api-keys/none` (each a cache miss: a CheckKeys to the keys service, a "
        "decision, a usage event, then 404 without going upstream; "
        f"{e['fill_rps_cache_misses']:,.0f} req/s); RSS {e['rss_kib'][0] / 1024:.1f} -> "
        f"{e['rss_kib'][1] / 1024:.1f} MiB once its usage buffer was empty."
    )


def _usage_memory(u: dict[str, Any]) -> str:
    return (
        f"- **Usage: {u['bytes_per_account']:.0f} B per active account.** RSS "
        + " -> ".join(f"{x / 1024:.1f}" for x in u["rss_kib"])
        + f" MiB: started, knowing no account; after learning the plans of {u['accounts']:,} "
        f"accounts from the key event stream ({u['plan_book_bytes_per_account']:.0f} B each); "
        f"after one decision for each ({u['counters_bytes_per_account']:.0f} B each: the "
        "minute's counters, snapshots)."
    )


def memory_section(r: dict[str, Any]) -> list[str]:
    e, u = r.get("edge_memory"), r.get("usage_memory")
    if not (e or u):
        return []
    out = ["## 5. Memory (VmRSS from /proc/<pid>/status)", ""]
    if e:
        out.append(_edge_memory(e))
    if u:
        out.append(_usage_memory(u))
    return [*out, ""]


def edge_sections(r: dict[str, Any]) -> list[str]:
    out = revocation_section(r["revocation"]) if r.get("revocation") else []
    return out + memory_section(r)
