"""Section 6a of the report: where the CPU goes, from py-spy's samples."""

from __future__ import annotations

from typing import Any

from bench.report.format import md_table

PROFILED_CPU = {  # profile -> (scenario, process) whose measured CPU per request it splits
    "edge-B": ("B", "edge"),
    "edge-C": ("C", "edge"),
    "usage-C": ("C", "usage"),
    "coordinator-A": ("A", "coordinator"),
    "coordinator-E": ("E", "coordinator-gated"),
}
TITLES = {
    "edge-B": "edge under B (public route)",
    "edge-C": "edge under C (full path)",
    "usage-C": "usage service under C (its share of the full path)",
    "coordinator-A": "Coordinator under A (alone, signed identities)",
    "coordinator-E": "gated Coordinator under E (the gate in process)",
    "usage-decide": "usage service under DecideBatch load (batches of 100)",
    "keys-check": "keys service under CheckKeys load (batches of 1)",
}


def profile_section(r: dict[str, Any]) -> list[str]:
    p = r.get("profiles")
    if not p:
        return []
    out = [
        "## 6a. Profiles (py-spy, sampled from outside the process under load)",
        "",
        "Share of the samples of a busy thread (threads caught waiting are left out). Under HTTP "
        "load, the shares also split the process's measured CPU per request (section 1) into "
        "microseconds. Folded stacks are in bench/results/profiles/ (`flamegraph.pl` or "
        "speedscope.app read them as they are).",
        "",
    ]
    scenarios = r.get("http", {}).get("scenarios", {})
    for name, summary in p.items():
        cpu = None
        if name in PROFILED_CPU and scenarios:
            scenario, process = PROFILED_CPU[name]
            cpu = scenarios[scenario]["cpu_us_per_request"][process]
        out += _one_profile(name, summary, cpu)
    return out


def _one_profile(name: str, summary: dict[str, Any], cpu: float | None) -> list[str]:
    """One profile's shares, and with `cpu` (us per request) the microseconds of each."""
    total = summary["samples"] or 1
    out = [f"### {TITLES.get(name, name)}", ""]
    if cpu is not None:
        out += [f"{cpu:,.0f} us of CPU per request in all.", ""]
    for label, counts in (("inclusive", summary["areas"]),
                          ("by library (innermost frame)", summary["layers"])):  # fmt: skip
        rows = []
        for area, n in counts.items():
            row = [area.replace("  ", "&nbsp;&nbsp;"), f"{n / total:.1%}"]
            if cpu is not None:
                row.append(f"{n / total * cpu:,.0f}")
            rows.append(row)
        header = [label, "share"] + (["us/request"] if cpu is not None else [])
        if rows:  # a process without any of the areas (the Coordinator alone) has no table
            out += [md_table(header, rows), ""]
    frames = "; ".join(f"`{frame}` {n / total:.1%}" for frame, n in summary["top_frames"][:6])
    return [*out, f"Hottest frames (self): {frames}", ""]
