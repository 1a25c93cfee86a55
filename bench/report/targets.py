"""The targets of issues 5, 20 and 22, each with what was measured, whether it was met and by how
much it was missed; and the plain-text summary printed at the end of a run."""

from __future__ import annotations

from typing import Any, NamedTuple

from bench.report.format import NOISY, ceil_to, floor_to, noise
from bench.report.workers import edge_growth

KIB = 1024


class Row(NamedTuple):
    what: str
    measured: str
    target: str
    met: bool
    off: str  # how far off a missed target is; "" when met


# A missed target's figures are rounded away from it, so that a miss never reads as met
# ("0.850 >= 0.850, missed"); a met one's are rounded as usual.


def at_least(what: str, value: float, target: float, fmt: str) -> Row:
    met = value >= target
    shown = value if met else floor_to(value, fmt)
    short = ceil_to(target - value, fmt)
    off = "" if met else f"short by {short:{fmt}} ({value / target:.0%} of the target)"
    return Row(what, f"{shown:{fmt}}", f">= {target:{fmt}}", met, off)


def at_most(what: str, value: float, target: float, fmt: str, unit: str) -> Row:
    met = value <= target
    shown = value if met else ceil_to(value, fmt)
    ratio = f"{value / target:.0%}" if value < 2 * target else f"{value / target:.1f}x"
    over = ceil_to(value - target, fmt)
    off = "" if met else f"over by {over:{fmt}}{unit} ({ratio} of the target)"
    return Row(what, f"{shown:{fmt}}{unit}", f"<= {target:{fmt}}{unit}", met, off)


def _http_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    if http := r.get("http"):
        # three decimals: C/B runs within a few hundredths of its target
        ratios = http["ratios"]
        rows.append(
            at_least("C/B: edge full / edge public route (req/s)", ratios["C/B"], 0.85, ".3f")
        )
        rows.append(at_least("C/D: edge full / peer stack (req/s)", ratios["C/D"], 1.5, ".3f"))
        if "E/A" in ratios:  # runs from before the gate ran in the Coordinator have no E
            what = "E/A: gated Coordinator / Coordinator alone (req/s)"
            rows.append(at_least(what, ratios["E/A"], 0.9, ".3f"))
        if "B/A" in ratios:  # the proxy hop (issue 22); older runs kept no B/A pairs
            what = "B/A: edge public route / Coordinator alone (req/s)"
            rows.append(at_least(what, ratios["B/A"], 0.6, ".3f"))
            what = "C/A: edge full / Coordinator alone (req/s)"
            rows.append(at_least(what, ratios["C/A"], 0.5, ".3f"))
    if paced := r.get("paced"):
        what = "p99 of C minus p99 of B at half C's peak"
        rows.append(at_most(what, paced["p99_difference_ms"], 2.0, ".2f", " ms"))
    if workers := r.get("workers"):  # issue 22: a second worker's CPU per request
        what = "edge CPU per request, two workers / one process, at the same rate"
        rows.append(at_most(what, edge_growth(workers), 1.0, ".3f", ""))
    return rows


def _bus_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    if d := r.get("decisions"):
        what = f"decisions/s, one usage process (batches of {d['headline_batch']})"
        rows.append(at_least(what, d["per_second"], 100_000, ",.0f"))
    if a := r.get("auth_checks"):
        what = (
            "auth checks/s, one keys process, cache misses "
            f"(batches of {a.get('headline_batch', 1)})"
        )
        rows.append(at_least(what, a["per_second"], 20_000, ",.0f"))
    return rows


def _edge_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    if r.get("revocation"):
        worst = max(e["p99_ms"] for e in r["revocation"]["edges"])
        rows.append(at_most("revocation reaches every edge, p99", worst, 50.0, ".1f", " ms"))
        if g := r["revocation"].get("gated_coordinator"):
            what = "revocation reaches the gated Coordinator, p99"
            rows.append(at_most(what, g["p99_ms"], 50.0, ".1f", " ms"))
    if e := r.get("edge_memory"):
        rows.append(at_most("edge memory per cached key", e["bytes_per_key"], KIB, ".0f", " B"))
    if g := r.get("gate_memory"):
        what = "gate auth cache memory per key"
        rows.append(at_most(what, g["bytes_per_key"], KIB, ".0f", " B"))
    if u := r.get("usage_memory"):
        what = "usage memory per active account"
        rows.append(at_most(what, u["bytes_per_account"], KIB, ".0f", " B"))
    return rows


def _partition_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    if d := r.get("decisions_two"):
        # the same work on two processes: no more than noise (a tenth) above one's
        what = f"usage CPU per decision, two processes / one (batches of {d['batch']})"
        rows.append(at_most(what, d["cpu_ratio"], 1.10, ".3f", ""))
    if t := r.get("takeover"):
        what = f"usage takeover after a kill, p99 (lease {t['lease_seconds']:g} s)"
        rows.append(at_most(what, t["p99_s"], 3.0, ".2f", " s"))
    return rows


def targets(r: dict[str, Any]) -> list[Row]:
    """Every target the results have a figure for, in the report's order."""
    return [*_http_rows(r), *_bus_rows(r), *_edge_rows(r), *_partition_rows(r)]


def missed(r: dict[str, Any]) -> list[Row]:
    return [row for row in targets(r) if not row.met]


def table(r: dict[str, Any]) -> str:
    """The plain-text summary printed at the end of a run."""
    lines = []
    if r.get("config", {}).get("quick"):
        lines.append(
            "--quick: a smoke run of a few short rounds, whose ratios move by several hundredths"
            " from run to run; `just bench` makes the record (bench/results/latest.md)\n"
        )
    if http := r.get("http"):
        lines.append(f"{'scenario':<22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for s in http["scenarios"].values():
            lines.append(
                f"{s['name']:<22} {s['rps']:>9,.0f} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f}"
            )
        ratios = http["ratios"]
        lines.append("paired ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
        lines.append("")
    level = noise(r)
    if level > NOISY:
        lines.append(f"NOISY: other processes used up to {level:.2f} cores during the HTTP runs\n")
    lines.append(f"{'target':<52} {'measured':>12} {'target':>12}  result")
    for what, value, target, met, off in targets(r):
        lines.append(f"{what:<52} {value:>12} {target:>12}  {'met' if met else 'MISSED ' + off}")
    return "\n".join(lines)
