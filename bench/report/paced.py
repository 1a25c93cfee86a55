"""Section 1's latency at half C's peak: B and C paced open loop (bench/paced.py)."""

from __future__ import annotations

from typing import Any

from bench.report.format import md_table

SHOWN_CPU = ("edge", "coordinator", "usage", "nats-server", "load generator")


def _named(p: dict[str, Any]) -> tuple[tuple[str, dict[str, Any]], ...]:
    return (("B edge, public", p["summary"]["B"]), ("C edge, full", p["summary"]["C"]))


def paced_section(r: dict[str, Any]) -> list[str]:
    p = r["paced"]
    return [
        *_latency_table(r),
        *_by_round(p),
        *_pooled(p),
        *_cpu_at_rate(p),
        *_bus_floor(p),
    ]


def _latency_table(r: dict[str, Any]) -> list[str]:
    p, c = r["paced"], r["config"]
    rows = [
        [
            name,
            f"{v['achieved_rate']:,.0f}",
            f"{v['p50_ms']:.2f}",
            f"{v['p99_ms']:.2f}",
            f"{v['wire_p50_ms']:.2f}",
            f"{v['wire_p99_ms']:.2f}",
            f"{v['decision_probe_p50_ms']:.2f} / {v['decision_probe_p99_ms']:.2f}",
            f"{v['others_cores']:.2f}",
        ]
        for name, v in _named(p)
    ]
    header = ["scenario", "achieved req/s", "p50 ms", "p99 ms", "wire p50 ms", "wire p99 ms"]
    header += ["decision probe p50 / p99 ms", "others' load (cores)"]
    return [
        "",
        f"### Latency at half C's peak ({p['rate']:,.0f} req/s, open loop)",
        "",
        "bench/paced.py sends request i at start + i/rate whatever happened before (wrk2's "
        "method; plain wrk has no fixed rate), 32 connections, "
        f"{c['paced_rounds']} rounds of {c['paced_seconds']:g} s alternating B, C. "
        "'from schedule' counts from the request's scheduled time (coordinated omission "
        "corrected; includes up to ~1 ms of the event loop's timer granularity), 'on the "
        "wire' from write to response.",
        "",
        md_table(header, rows),
    ]


def _by_round(p: dict[str, Any]) -> list[str]:
    rounds = "; ".join(
        f"{rb['p99_ms']:.1f} / {rc['p99_ms']:.1f} ({rb.get('edge_waited_ms_per_s', 0):.0f}"
        f" / {rc.get('edge_waited_ms_per_s', 0):.0f})"
        for rb, rc in zip(p["runs"]["B"], p["runs"]["C"], strict=True)
    )
    return [
        "",
        "Medians over the rounds. The decision probe sends one single-item DecideBatch to the "
        "usage process every 10 ms during each run: its round trip is what a decision waits "
        "for at that load. p99 by round, B / C ms (the edge's wait for a core, B / C ms "
        "per second): " + rounds + ".",
        "",
        f"p99 difference C - B, the median of the rounds' differences: "
        f"**{p['p99_difference_ms']:.2f} ms** from schedule "
        f"({', '.join(f'{x:.1f}' for x in p['per_round_p99_differences_ms'])} ms by round), "
        f"{p['wire_p99_difference_ms']:.2f} ms on the wire.",
    ]


def _pooled(p: dict[str, Any]) -> list[str]:
    if "pooled_p99_ms" not in p:
        return []
    pb, pc = p["pooled_p99_ms"]["B"], p["pooled_p99_ms"]["C"]
    return [
        "",
        f"The p99 of all rounds' requests together ({p['pooled_requests']['B']:,} of B, "
        f"{p['pooled_requests']['C']:,} of C): B {pb:.2f} ms, C {pc:.2f} ms, difference "
        f"**{p['pooled_p99_difference_ms']:.2f} ms**. A round's p99 rests on its few "
        "dozen slowest requests, so a single pause of the machine sets it; pooled, it "
        "rests on hundreds.",
    ]


def _cpu_at_rate(p: dict[str, Any]) -> list[str]:
    rows = [
        [name, *(f"{v['cpu_us_per_request'].get(w, 0):.0f}" for w in SHOWN_CPU),
         f"{v['busy_cores']:.2f}"]
        for name, v in _named(p)
    ]  # fmt: skip
    return [
        "",
        "CPU at this rate (medians over the rounds; microseconds of CPU per request, and the "
        "whole machine's busy cores):",
        "",
        md_table(["scenario", *SHOWN_CPU, "machine busy (cores of 2)"], rows),
    ]


def _bus_floor(p: dict[str, Any]) -> list[str]:
    floor = p.get("bus_floor")
    if not floor:
        return []
    return [
        "",
        f"One bare request/reply (bench/null_responder.py) at {floor['rate']:,.0f}/s costs "
        f"nats-server **{floor['nats-server']:.0f} us** and the responder "
        f"**{floor['responder']:.0f} us** of CPU: the least a decision's round trip adds "
        "to C at this rate, beyond the edge's own share.",
    ]
