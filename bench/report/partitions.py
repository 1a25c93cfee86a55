"""Section 7 of the report: usage partitions that move, decisions with one and with two usage
processes, and the takeover after a holder is killed (bench/partition_phases.py)."""

from __future__ import annotations

from typing import Any

from bench.report.format import md_table


def _decisions_two(d: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            f"{side['per_second']:,.0f}",
            f"{side['usage_cpu_us_per_decision']:.2f}",
            f"{side['nats_cpu_us_per_decision']:.2f}",
            f"{side['usage_cores']:.2f}",
            f"{side.get('others_cores', 0):.2f}",
        ]
        for name, side in (("one", d["one"]), ("two", d["two"]))
    ]
    header = ["usage processes", "decisions/s", "usage CPU us/decision"]
    header += ["nats-server CPU us/decision", "usage cores busy", "others' load (cores)"]
    by_round = ", ".join(f"{x:.3f}" for x in d["cpu_ratio_by_round"])
    return [
        "### Decisions with one and with two usage processes",
        "",
        f"DecideBatch requests of {d['batch']} decisions for {d['accounts']:,} accounts over all "
        f"16 partitions, {d['concurrency']} in flight, as in section 2; {d['rounds']} rounds of "
        f"{d['seconds']:g} s alternating one usage process and two sharing the partitions by "
        "leases (the second joins before its run and leaves after it; before each run the "
        "partitions have settled and every account was decided once). CPU per decision: the "
        "usage processes' CPU seconds (/proc/<pid>/stat) over the decisions answered, all "
        "rounds together.",
        "",
        md_table(header, rows),
        "",
        f"Two / one: usage CPU per decision **{d['cpu_ratio']:.3f}** (by round: {by_round}), "
        f"decisions/s {d['rate_ratio']:.2f}.",
        "",
    ]


def _takeover(t: dict[str, Any]) -> list[str]:
    row = [str(t["kills"]), *(f"{t[k]:.2f}" for k in ("p50_s", "p99_s", "max_s", "min_s"))]
    unanswered = (
        f" {t['unanswered']} were not answered within 30 s (counted as 30 s)."
        if t["unanswered"]
        else ""
    )
    return [
        "### Takeover after a kill",
        "",
        f"Two usage processes; {t['kills']} times, the process holding a partition (partition i "
        "mod 16 at the i-th kill; its holder read from the lease bucket) is killed with "
        f"SIGKILL while a probe asks for one decision of an account of that partition every "
        f"{t['probe_every_ms']:g} ms (each request leaves on time, whatever became of the one "
        "before). Measured: from the kill to the first decision admitted by a new holder (an "
        "epoch above the killed one's). The killed process is restarted and the partitions "
        "settle over the two before the next kill. "
        f"USAGE_LEASE_SECONDS={t['lease_seconds']:g}.{unanswered}",
        "",
        md_table(["kills", "p50 s", "p99 s", "max s", "min s"], [row]),
        "",
        "By kill (s): " + ", ".join(f"{x:.2f}" for x in t["seconds"]) + ".",
        "",
        *_rejoin(t),
    ]


def _rejoin(t: dict[str, Any]) -> list[str]:
    if "rejoin_gaps_s" not in t:
        return []
    gaps = ", ".join(f"{x:.2f}" for x in t["rejoin_gaps_s"])
    return [
        "While the restarted process rejoined, the longest a partition stayed free between a "
        "holder handing it over and the next taking it (from the watch of the lease bucket): "
        f"**{t['rejoin_gap_max_s']:.2f} s** at most; by restart: {gaps} s. No decision is "
        "answered for a free partition (edges ask again until USAGE_TIMEOUT, then apply "
        "USAGE_FAIL_MODE).",
        "",
    ]


def partitions_section(r: dict[str, Any]) -> list[str]:
    d, t = r.get("decisions_two"), r.get("takeover")
    if not d and not t:
        return []
    out = ["## 7. Usage partitions that move", ""]
    if d:
        out += _decisions_two(d)
    if t:
        out += _takeover(t)
    return out
