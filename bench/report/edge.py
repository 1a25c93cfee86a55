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
    gated = v.get("gated_coordinator")
    rows = [
        [e["edge"], f"{e['p50_ms']:.2f}", f"{e['p99_ms']:.2f}", f"{e['max_ms']:.2f}",
         f"{e['min_ms']:.2f}"]
        for e in [*v["edges"], *([gated] if gated else [])]
    ]  # fmt: skip
    where = "two edges and the gated Coordinator" if gated else "two edges"
    return [
        "## 4. Revocation propagation",
        "",
        f"{v['revocations']} keys, each in use on {where} (a poller on each sending it back "
        "to back); the owner revokes it with `DELETE /v1/api-keys/{id}` through the first "
        "edge, which sends the command to the keys service (the others learn it from the key "
        "event stream); " + SINCE[v.get("timed_from", "response")],
        "",
        md_table(["where", "p50 ms", "p99 ms", "max ms", "min ms"], rows),
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


def _gate_memory(g: dict[str, Any]) -> list[str]:
    """The gate's auth cache, measured in process: per key, and of what one entry is made."""
    caches = g["caches"]
    spreads = "; ".join(
        f"{c['bytes_per_key']:.0f} B with {c['keys_per_account']} key(s) per account"
        for c in caches
    )
    parts = list(caches[0]["per_key"])
    rows = [[part, *(f"{c['per_key'][part]:.0f}" for c in caches)] for part in parts]
    header = ["bytes per key", *(f"{c['keys_per_account']} per account" for c in caches)]
    return [
        f"- **Gate: {g['bytes_per_key']:.0f} B per cached key** (the larger of: {spreads}). "
        f"In process (bench/gate_phases.py): an aitbc_gate AuthCache with the gate's default "
        f"settings, filled with {g['keys']:,} keys' facts decoded from CheckedKeys replies of "
        "100 as the gate receives them; tracemalloc's count of the bytes it then holds. One "
        "entry's objects, and the rest (the cache's three tables, and the sets of an account's "
        "digests when it has several):",
        "",
        md_table(header, rows),
    ]


def memory_section(r: dict[str, Any]) -> list[str]:
    e, u, g = r.get("edge_memory"), r.get("usage_memory"), r.get("gate_memory")
    if not (e or u or g):
        return []
    out = ["## 5. Memory (VmRSS from /proc/<pid>/status; the gate's cache: tracemalloc)", ""]
    if e:
        out.append(_edge_memory(e))
    if u:
        out.append(_usage_memory(u))
    if g:
        out += _gate_memory(g)
    return [*out, ""]


def gate_cpu_section(r: dict[str, Any]) -> list[str]:
    """The gate's CPU per request, in process (bench/gate_cpu.py), and what it leaves of the
    Coordinator's rate when the Coordinator's own CPU per request under A is known."""
    g = r.get("gate_cpu")
    if not g:
        return []
    rounds = ", ".join(f"{x:.2f}" for x in g["per_round_gate_us"])
    out = [
        "## 5b. The gate's CPU per request (in process)",
        "",
        f"**{g['gate_us']:.2f} us of CPU per request** (rounds: {rounds}): GateMiddleware around "
        f"a bare ASGI app ({g['bare_us']:.2f} us a request alone; {g['gated_us']:.2f} us gated), "
        f"on this run's bus as an edge, {g['requests_per_round']:,} requests a round over the "
        f"{g['keys']} load keys, with a usage spool, the background work included "
        "(bench/gate_cpu.py). CPU time, not a rate: a busy host moves it far less than req/s.",
    ]
    a = r.get("http", {}).get("scenarios", {}).get("A")
    if a:
        own = a["cpu_us_per_request"]["coordinator"]
        out.append(
            f"With the Coordinator's own {own:.0f} us per request under A, the gate's CPU alone "
            f"leaves it at most {own / (own + g['gate_us']):.3f} of its rate (E/A's bound, "
            "before the server's work for the gate's seven response headers)."
        )
    return [*out, ""]


def edge_sections(r: dict[str, Any]) -> list[str]:
    out = revocation_section(r["revocation"]) if r.get("revocation") else []
    return out + memory_section(r) + gate_cpu_section(r)
