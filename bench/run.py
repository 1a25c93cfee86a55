"""`just bench [--quick]`: every benchmark of issue 5 in one process tree, then the report.

The run's state (stack, seeded accounts, targets, results) is bench/state.py's Bench; the
phases are in bench/bus_phases.py, bench/http_phases.py and bench/edge_phases.py, and this
module runs them in order (each figure's method is described in bench/README.md):
  seed      accounts and keys into the keys database (bench/seed.py); the relay publishes them
  memory-u  usage process RSS before/after learning and deciding for every seeded account
  auth      CheckKeys rate of one keys process (batches of 1, 10, 100), alternating with a bare
            responder (the ceiling)
  decide    DecideBatch rate of one usage process, alternating with the bare responder
  http      A B C D A B C D ... with wrk, 32 connections; then B and C at half C's peak, paced
  profile   py-spy on the edge under B and C, on usage and keys under their loads
  revoke    two edges, a key in use on both, revoked through the first
  memory-e  a fresh edge's RSS before/after caching every seeded key
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from bench import bus_phases, edge_phases, http_phases, machine, report
from bench.common import RESULTS
from bench.config import Config
from bench.cpu import load_average
from bench.state import Bench


async def run(b: Bench) -> dict[str, Any]:
    started = time.perf_counter()
    b.results["machine"] = machine.describe()
    b.results["placement"] = {"server": b.cpus[:1], "rest": b.cpus[1:]} if len(b.cpus) > 1 else None
    b.results["load_average"] = {"start": load_average()}
    phases: dict[str, float] = {}
    b.results["phase_seconds"] = phases

    async def phase(name: str, step: Any) -> None:
        t = time.perf_counter()
        await step
        phases[name] = round(time.perf_counter() - t, 1)

    await phase("seed and start", b.start_and_seed())
    await phase("usage memory", bus_phases.usage_memory(b))
    t = time.perf_counter()
    b.start_http_side()
    phases["start HTTP side"] = round(time.perf_counter() - t, 1)
    gc.freeze()  # the seeded keys stay: no collection walks them while we measure
    async with b.bus() as nc:
        await phase("auth checks", bus_phases.auth_checks(b, nc))
        await phase("decisions", bus_phases.decisions(b, nc))
    await phase("HTTP rounds", http_phases.http(b))
    await phase("paced", http_phases.paced(b))
    if b.config.profile_seconds:
        await phase("profiles", http_phases.profile(b))
    b.place(None)
    await phase("revocations", edge_phases.revocations(b))
    await phase("edge memory", edge_phases.edge_memory(b))
    b.results["commands"] = b.commands
    b.results["load_average"]["end"] = load_average()
    b.results["wall_seconds"] = time.perf_counter() - started
    b.results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return b.results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="just bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="about a minute: fewer, shorter runs")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="py-spy profiles (default: on for the full run, off for --quick)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, data)")
    return parser.parse_args()


def measure(config: Config, keep: bool) -> dict[str, Any]:
    """Every phase on a stack of its own in a work folder, which is deleted unless `keep` or
    the run failed (its logs are there)."""
    root = Path(tempfile.mkdtemp(prefix="aitbc-bench-"))
    bench = Bench(config, root)

    def terminate(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    ok = False
    try:
        results = uvloop.run(run(bench))
        ok = True
    finally:
        bench.stack.stop_all()
        if ok and not keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"work folder (logs): {root}", file=sys.stderr)
    return results


def write_report(results: dict[str, Any], quick: bool) -> None:
    name = "quick" if quick else "latest"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text(report.markdown(results, quick=quick))
    print(report.table(results))
    print(f"\nwritten: {RESULTS / (name + '.md')} and {name}.json")


def main() -> int:
    """0 when every target is met; 1 when one is missed (the report is written all the same)."""
    args = parse_args()
    config = Config.of(args.quick, args.profile)
    results = measure(config, args.keep)
    write_report(results, config.quick)
    missed = report.missed(results)
    if missed:
        names = "; ".join(row.what for row in missed)
        print(f"{len(missed)} target(s) missed: {names}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
