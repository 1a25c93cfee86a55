"""Section 1 of the report: throughput, latency and CPU of A E B C R D N with wrk."""

from __future__ import annotations

from typing import Any

from bench.report.format import cores, md_table, median, others_cores
from bench.report.paced import paced_section
from bench.report.workers import workers_section


def http_section(r: dict[str, Any]) -> list[str]:
    http = r["http"]
    out = [*_throughput(r), *_ratios(http), *_batching(http), *_cpu_per_request(http)]
    if r.get("paced"):
        out += paced_section(r)
    if r.get("workers"):
        out += workers_section(r)
    return out


def _method(r: dict[str, Any]) -> list[str]:
    c = r["config"]
    order = " ".join(r["http"]["scenarios"])  # in the order of a round
    out = [
        f"## 1. Throughput and latency (wrk, alternating {order})",
        "",
        f"{c['rounds']} rounds of {order}, {c['seconds']:g} s each, {c['connections']} "
        f"connections, one wrk thread; medians over the rounds. Every Python server: uvicorn, "
        "one worker, uvloop + httptools, no access log in uvicorn; nginx (N): one process, no "
        "access log (bench/nginx.py).",
        "",
    ]
    gated = "E" in r["http"]["scenarios"]
    if gated:
        out[-1:] = [
            "",
            "E is A's load on a second sample Coordinator that runs the gate in process "
            "(COORDINATOR_GATE=1, aitbc_coordinator.gated), with C's keys in `X-API-Key` "
            "(every key sent once before the rounds): what a Python upstream pays to check "
            "keys and limits itself, without an edge in front.",
            "",
        ]
    placed = r.get("placement")
    if placed:
        rest = ", ".join(str(cpu) for cpu in placed["rest"])
        server = "the Coordinator in A, the gated one in E" if gated else "the Coordinator in A"
        server += (
            ", the edge in B, C and R" if "R" in r["http"]["scenarios"] else ", the edge in B and C"
        )
        server += ", the peer in D" + (", nginx in N" if "N" in r["http"]["scenarios"] else "")
        out[-1:] = [
            "",
            f"The server under test ({server}) "
            f"runs alone on CPU {placed['server'][0]}; the rest of the stack (NATS, the usage "
            f"and keys services, the Coordinator behind the edge, Redis) and the load generator "
            f"on CPU {rest}, as the paced rounds and the profiles do with the edge.",
            "",
        ]
    return out


def _throughput(r: dict[str, Any]) -> list[str]:
    rows = []
    for sc in r["http"]["scenarios"].values():
        rounds = ", ".join(f"{run['rps']:,.0f}" for run in sc["runs"])
        rows.append(
            [
                f"**{sc['name']}**",
                f"{sc['rps']:,.0f}",
                f"{sc['p50_ms']:.2f}",
                f"{sc['p99_ms']:.2f}",
                str(sc["non_2xx"] + sc["socket_errors"]),
                rounds,
                f"{others_cores(sc['runs']):.2f}",
            ]
        )
    header = ["scenario", "req/s", "p50 ms", "p99 ms", "errors", "req/s per round"]
    return [*_method(r), md_table([*header, "others' load (cores)"], rows)]


def _ratios(http: dict[str, Any]) -> list[str]:
    ratios = http["ratios"]
    of_medians = http["ratios_of_medians"]
    per_round = http["per_round_ratios"]
    return [
        *_gated_ratios(http),
        *_restricted_ratio(http),
        *_workers(http),
        "",
        f"Ratios, the median of each round's ratio (each pair ran back to back, so most of the "
        f"machine's noise cancels): **C/B = {ratios['C/B']:.3f}**, **C/D = {ratios['C/D']:.3f}**, "
        f"C/A = {ratios['C/A']:.3f}. Per round: C/B "
        f"{', '.join(f'{x:.3f}' for x in per_round['C/B'])}; C/D "
        f"{', '.join(f'{x:.3f}' for x in per_round['C/D'])}. Ratios of the medians: C/B "
        f"{of_medians['C/B']:.3f}, C/D {of_medians['C/D']:.3f}, C/A {of_medians['C/A']:.3f}"
        + (f", B/A {of_medians['B/A']:.3f}." if "B/A" in of_medians else "."),
        *_hop_ratios(http),
    ]


def _hop_ratios(http: dict[str, Any]) -> list[str]:
    """What the proxy hop leaves of the upstream: the edge's (B/A, C/A) against nginx's (N)."""
    ratios, per_round = http["ratios"], http["per_round_ratios"]
    if "B/A" not in ratios:  # runs from before the pairs were kept
        return []
    line = (
        f"The proxy hop: **B/A = {ratios['B/A']:.3f}** (what the edge's hop alone leaves of "
        f"the upstream's rate; per round {', '.join(f'{x:.3f}' for x in per_round['B/A'])}), "
        f"**C/A = {ratios['C/A']:.3f}** (the hop with keys, limits and usage events)"
    )
    if "N/A" in ratios:
        s = http["scenarios"]
        edge_us = s["B"]["cpu_us_per_request"]["edge"]
        nginx_us = s["N"]["cpu_us_per_request"].get("nginx", 0.0)
        line += (
            f"; nginx in the edge's place (N, bench/nginx.py: a key map, `limit_req` per key, "
            f"keep-alive upstream, one process) leaves **N/A = {ratios['N/A']:.3f}**, and the "
            f"edge's public route **B/N = {ratios['B/N']:.3f}** of nginx's rate. The hop's own "
            f"CPU per request: the edge {edge_us:.0f} us under B, nginx {nginx_us:.0f} us under "
            "N (where nginx runs alone on its core, N's rate is bound by the other core's: the "
            "Coordinator's and the load generator's)"
        )
    return ["", line + "."]


def _gated_ratios(http: dict[str, Any]) -> list[str]:
    """E/A and C/E, when the run had E: the gate in the Coordinator against the Coordinator
    alone and against the edge."""
    ratios, per_round = http["ratios"], http["per_round_ratios"]
    if "E/A" not in ratios:
        return []
    return [
        "",
        f"The gate in the Coordinator, paired round by round as C/B is: **E/A = "
        f"{ratios['E/A']:.3f}** (what checking keys and limits in process leaves of the "
        f"Coordinator's rate), **C/E = {ratios['C/E']:.3f}** (the edge's full path against the "
        f"gate in process). Per round: E/A {', '.join(f'{x:.3f}' for x in per_round['E/A'])}; "
        f"C/E {', '.join(f'{x:.3f}' for x in per_round['C/E'])}. Ratios of the medians: E/A "
        f"{http['ratios_of_medians']['E/A']:.3f}, C/E {http['ratios_of_medians']['C/E']:.3f}.",
    ]


def _restricted_ratio(http: dict[str, Any]) -> list[str]:
    """R/C, when the run had R: C's load with keys that carry a scope and an allow-list."""
    if "R/C" not in http["ratios"]:
        return []
    s = http["scenarios"]
    c_us, r_us = s["C"]["cpu_us_per_request"]["edge"], s["R"]["cpu_us_per_request"]["edge"]
    rounds = ", ".join(f"{x:.3f}" for x in http["per_round_ratios"]["R/C"])
    return [
        "",
        f"Restricted keys (R: C's load with keys holding a scope, `jobs:read`, and an "
        f"allow-list, loopback), paired round by round with C: **R/C = "
        f"{http['ratios']['R/C']:.3f}** (per round: {rounds}); the edge's CPU per request "
        f"{r_us:.0f} us against C's {c_us:.0f} us ({r_us - c_us:+.0f} us for the two checks).",
    ]


def _workers(http: dict[str, Any]) -> list[str]:
    """C2 against C, when the run had C2: the full path through an edge of two workers."""
    if "C2/C" not in http["ratios"]:
        return []
    s = http["scenarios"]
    c_us, c2_us = (
        s["C"]["cpu_us_per_request"]["edge"],
        s["C2"]["cpu_us_per_request"]["edge-workers"],
    )
    rounds = ", ".join(f"{x:.3f}" for x in http["per_round_ratios"]["C2/C"])
    return [
        "",
        f"Two edge workers (C2: C's load on an edge with `API_WORKERS=2`, its workers on both "
        f"cores beside everything else, where C's one process has a core to itself): "
        f"**C2/C = {http['ratios']['C2/C']:.3f}** (per round: {rounds}), C {s['C']['rps']:,.0f} "
        f"and C2 {s['C2']['rps']:,.0f} req/s; the edge's CPU per request {c2_us:.0f} us in "
        f"its two workers together against {c_us:.0f} us in one ({c2_us - c_us:+.0f} us).",
    ]


def _batching(http: dict[str, Any]) -> list[str]:
    metrics = http.get("edge_metrics", {})
    batches = metrics.get('aitbc_bus_batches_total{batch="decisions"}', 0)
    decisions = {k: v for k, v in metrics.items() if k.startswith("aitbc_ratelimit_decisions")}
    decided = sum(decisions.values())
    leased = sum(v for k, v in decisions.items() if 'source="lease"' in k)
    if not batches:
        return []
    return [
        "",
        f"The edge took {decided:,.0f} decisions: {leased:,.0f} from leases, admitted without "
        f"asking, and the other {decided - leased:,.0f} asked of the usage service; with the "
        f"leases' renewals, {batches:,.0f} DecideBatch requests: **{decided / batches:.2f} "
        "requests per decision message** on average at "
        "this load (a decision far from the limit lends the edge more units, 32 at first and "
        "then what the account's pace needs, renewed at half or two round trips ahead, "
        "whichever is earlier; the adaptive batcher sends "
        "what arrives in one event-loop turn at once while fewer than four batches are in "
        "flight for the partition).",
    ]


def _cpu_per_request(http: dict[str, Any]) -> list[str]:
    scenarios = http["scenarios"]
    procs = list(next(iter(scenarios.values()))["cpu_us_per_request"])
    rows = []
    for sc in scenarios.values():
        per_run = [cores(run) for run in sc["runs"]]
        busy = sum(sum(c_.values()) for c_ in per_run) / len(per_run)
        waited = median([run.get("edge_waited_ms_per_s", 0.0) for run in sc["runs"]])
        cpu = sc["cpu_us_per_request"]
        rows.append(
            [sc["name"]]
            + [f"{cpu[p]:.0f}" for p in procs]
            + [f"{sum(cpu.values()):.0f}", f"{busy:.2f}", f"{waited:.0f}"]
        )
    return [
        "",
        "CPU per request, by process (median over rounds; microseconds of CPU per request, "
        "from /proc/<pid>/stat; 'load generator' is wrk):",
        "",
        md_table(["scenario", *procs, "total", "cores busy", "edge waited, ms/s"], rows),
        "",
        "'edge waited': milliseconds per second the edge was ready to run but waiting for a "
        "core (/proc/<pid>/task/*/schedstat), held back by the other processes on the two "
        "cores.",
    ]
