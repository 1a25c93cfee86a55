"""One edge process or two at the same load (issue 22, item 4): C through the one-process edge
and C2 through the edge of two workers (API_WORKERS=2), paced at the same rate, half C's peak;
and C at half that rate, which is each of C2's workers' share.

The HTTP rounds compare C and C2 at their peaks, where each runs as fast as the machine lets
it, with the load generator on the same two cores: there a second worker buys no throughput,
and the CPU per request it costs depends on the rate as much as on the edge. At one rate the
two carry the same requests, so their CPU per request compares the edges alone. Every server
is unplaced here (C2's workers cannot be placed apart from the rest), and the edges' own
counters say how many NATS messages each sent per request: the decision batches (lease
renewals included) and the usage batches, which an edge sends at a pace set by time and by
the accounts it serves, not by its requests.
"""

from __future__ import annotations

from typing import Any

from aitbc_contracts.subjects import usage_decide_subject
from bench import bus_load
from bench.common import edge_metrics, median, say
from bench.http_phases import paced_run, paced_summary
from bench.state import WORKERS_EDGE, Bench

# name: (scenario, share of the phase's rate, the process under test)
RUNS = {"C": ("C", 1.0, "edge"), "C2": ("C2", 1.0, WORKERS_EDGE), "C half": ("C", 0.5, "edge")}
BATCHES = {
    "decisions": 'aitbc_bus_batches_total{batch="decisions"}',
    "usage": 'aitbc_bus_batches_total{batch="usage-events"}',
}


async def workers(b: Bench) -> None:
    c = b.config
    rate = b.results["http"]["scenarios"]["C"]["rps"] / 2
    say(f"workers: C, C2 at {rate:,.0f}/s and C at half that, {c.paced_rounds} rounds")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNS}
    assert b.seeded is not None
    probe = bus_load.decide_work(usage_decide_subject, [b.seeded.bulk[-1].account_id], 1)[0]
    b.place(None)
    async with b.bus() as nc:
        for _ in range(c.paced_rounds):
            for name, (scenario, share, server) in RUNS.items():
                edge = b.stack.procs[server]
                before = await edge_metrics(edge)
                result = await paced_run(b, nc, scenario, rate * share, probe)
                after = await edge_metrics(edge)
                result.pop("from_schedule_ms")
                result["server"] = server
                result["batches_per_1000"] = {
                    kind: (after.get(series, 0) - before.get(series, 0)) / result["requests"] * 1000
                    for kind, series in BATCHES.items()
                }
                runs[name].append(result)
    summary = {}
    for name, results in runs.items():
        summary[name] = paced_summary(results) | {
            "server": RUNS[name][2],
            "batches_per_1000": {
                kind: median([r["batches_per_1000"][kind] for r in results]) for kind in BATCHES
            },
        }
    b.results["workers"] = {"rate": rate, "summary": summary, "runs": runs}
    one, two = (summary[n]["cpu_us_per_request"][RUNS[n][2]] for n in ("C", "C2"))
    say(f"workers: the edge's CPU per request, one process {one:.0f} us, two {two:.0f} us")
