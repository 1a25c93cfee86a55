"""Section 1's one edge process or two at the same load (bench/worker_phases.py)."""

from __future__ import annotations

from typing import Any

from bench.report.format import md_table

OTHERS = ("coordinator", "usage", "nats-server", "load generator")
NAMES = {
    "C": "C, one edge process",
    "C2": "C2, two workers (together)",
    "C half": "C, one process, at half the rate",
}


def edge_growth(w: dict[str, Any]) -> float:
    """Two workers' CPU per request over one process's, at the same rate: the edge's own."""
    s = w["summary"]
    one, two = (s[name]["cpu_us_per_request"][s[name]["server"]] for name in ("C", "C2"))
    return float(two / one)


def workers_section(r: dict[str, Any]) -> list[str]:
    w, c = r["workers"], r["config"]
    s = w["summary"]
    rows = []
    for name, label in NAMES.items():
        v = s[name]
        cpu = v["cpu_us_per_request"]
        edge = cpu[v["server"]]
        others = [cpu.get(who, 0) for who in OTHERS]
        batches = v["batches_per_1000"]
        figures = [v["achieved_rate"], edge, *others, edge + sum(others)]
        messages = (batches["decisions"], batches["usage"])
        rows.append([label, *(f"{x:,.0f}" for x in figures), *(f"{x:.1f}" for x in messages)])
    header = ["", "req/s", "edge", *OTHERS, "together", "decision batches", "usage batches"]
    one, two, half = (s[n]["cpu_us_per_request"][s[n]["server"]] for n in NAMES)
    return [
        "",
        f"### One edge process or two, at the same load ({w['rate']:,.0f} req/s)",
        "",
        "C through the one-process edge and C2 through the edge of two workers "
        "(`API_WORKERS=2`), paced at the same rate (half C's peak), and C at half that rate: "
        f"each of C2's workers' share. {c['paced_rounds']} round"
        f"{'s' if c['paced_rounds'] != 1 else ''} of {c['paced_seconds']:g} s, "
        "alternating; no process placed (bench/worker_phases.py). Microseconds of CPU per "
        "request by process (medians over the rounds), and the NATS messages the edge sent "
        "per 1,000 requests (its own counters):",
        "",
        md_table(header, rows),
        "",
        f"At the same rate the two workers together spend **{two:.0f} us** of CPU per request "
        f"against one process's {one:.0f} us (**{two / one:.3f}**); one process at half the "
        f"rate, which is what each worker carries, spends {half:.0f} us. An event loop's CPU "
        "per request grows as its rate falls (fewer requests share each wake-up), for the "
        "Coordinator as for the edge, and the pace of an edge's bus messages is set by time "
        "and by its accounts, not by its requests: bench/results/ANALYSIS.md, session 17.",
    ]
