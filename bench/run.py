"""`just bench [--quick] [--only NAMES]`: the benchmarks in one process tree, then the report.

The run's state (stack, seeded accounts, targets, results) is bench/state.py's Bench; the
phases are in bench/bus_phases.py, bench/http_phases.py, bench/edge_phases.py,
bench/gate_phases.py and bench/partition_phases.py, and this module runs them in order (each
figure's method is described in bench/README.md). Seeding always comes first; `--only` runs
some of the others:
  (seed)        accounts and keys into the keys database (bench/seed.py); the relay publishes them
  usage-memory  usage process RSS before/after learning and deciding for every seeded account
  auth          CheckKeys rate of one keys process (batches of 1, 10, 100), alternating with a
                bare responder (the ceiling)
  decisions     DecideBatch rate of one usage process, alternating with the bare responder
  http          A E B C R D N ... with wrk, 32 connections (E: the gated Coordinator, R:
                restricted keys, N: nginx where installed)
  paced         B and C at half C's peak, paced (needs http)
  workers       C through one edge process and two (API_WORKERS=2) at the same paced rate,
                half C's peak, and C at half that (needs http)
  profiles      py-spy on the Coordinator under A and E, the edge under B and C, on usage
                and keys under their loads
  revocations   two edges and the gated Coordinator, a key in use on all, revoked through the
                first edge
  edge-memory   a fresh edge's RSS before/after caching every seeded key
  gate-memory   the gate's auth cache, in this process: bytes per cached key (tracemalloc)
  gate-cpu      the gate's CPU per request, in this process: GateMiddleware around a bare app
  decisions2    DecideBatch rate and CPU per decision, one usage process and two, alternately
  takeover      SIGKILL of a partition's holder, timed until another process answers for it
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
from nats.aio.client import Client as NATS

from bench import (
    bus_phases,
    edge_phases,
    gate_cpu,
    gate_phases,
    http_phases,
    machine,
    partition_phases,
    report,
    worker_phases,
)
from bench.common import RESULTS
from bench.config import Config
from bench.cpu import load_average
from bench.state import Bench


@dataclass(frozen=True)
class Phase:
    title: str  # its name in the results' phase_seconds
    step: Callable[[Bench], Awaitable[None]]
    http_side: bool = False  # it needs the HTTP side: the Coordinator, the edges, the peer
    early: bool = False  # it runs before the HTTP side starts (and before gc.freeze)


def _on_bus(step: Callable[[Bench, NATS], Awaitable[None]]) -> Callable[..., Any]:
    async def on_bus(b: Bench) -> None:
        async with b.bus() as nc:
            await step(b, nc)

    return on_bus


# Every phase, in the order of a run; `--only` picks some of them by these names.
PHASES = {
    "usage-memory": Phase("usage memory", bus_phases.usage_memory, early=True),
    "auth": Phase("auth checks", _on_bus(bus_phases.auth_checks)),
    "decisions": Phase("decisions", _on_bus(bus_phases.decisions)),
    "http": Phase("HTTP rounds", http_phases.http, http_side=True),
    "paced": Phase("paced", http_phases.paced, http_side=True),
    "workers": Phase("workers", worker_phases.workers, http_side=True),
    "profiles": Phase("profiles", http_phases.profile, http_side=True),
    "revocations": Phase("revocations", edge_phases.revocations, http_side=True),
    "edge-memory": Phase("edge memory", edge_phases.edge_memory, http_side=True),
    "gate-memory": Phase("gate memory", gate_phases.gate_memory),
    "gate-cpu": Phase("gate CPU", gate_cpu.gate_cpu),
    "decisions2": Phase("decisions, one and two usage processes", partition_phases.decisions_two),
    "takeover": Phase("usage takeover", partition_phases.takeover),
}
# paced and workers run at half the rate the HTTP rounds measured
NEEDS = {"paced": "http", "workers": "http"}


async def run(b: Bench, names: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    b.results["machine"] = machine.describe()
    b.results["placement"] = {"server": b.cpus[:1], "rest": b.cpus[1:]} if len(b.cpus) > 1 else None
    b.results["load_average"] = {"start": load_average()}
    phases: dict[str, float] = {}
    b.results["phase_seconds"] = phases
    http_side = any(PHASES[name].http_side for name in names)

    async def phase(name: str, step: Awaitable[None]) -> None:
        t = time.perf_counter()
        await step
        phases[name] = round(time.perf_counter() - t, 1)

    await phase("seed and start", b.start_and_seed(http_side))
    prepared = False
    for name in names:
        p = PHASES[name]
        if not p.early and not prepared:
            prepared = True
            if http_side:
                t = time.perf_counter()
                b.start_http_side()
                phases["start HTTP side"] = round(time.perf_counter() - t, 1)
            gc.freeze()  # the seeded keys stay: no collection walks them while we measure
        await phase(p.title, p.step(b))
        if p.http_side:
            b.place(None)  # the next phase places what it measures, if anything
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
    parser.add_argument(
        "--only",
        type=lambda value: [name.strip() for name in value.split(",") if name.strip()],
        default=[],
        metavar="NAMES",
        help="these phases only (comma-separated, from the list above), in the run's order; "
        "the report goes to bench/results/only.md",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, data)")
    args = parser.parse_args()
    for name in args.only:
        if name not in PHASES:
            parser.error(f"no phase {name!r}: one of {', '.join(PHASES)}")
        if name in NEEDS and NEEDS[name] not in args.only:
            parser.error(f"{name} needs {NEEDS[name]}: --only {NEEDS[name]},{name}")
    if "profiles" in args.only:
        args.profile = True
    return args


def phase_names(only: list[str], config: Config) -> list[str]:
    """The phases to run, in the run's order: `only`, or every one (the profiles when on)."""
    if only:
        return [name for name in PHASES if name in only]
    return [name for name in PHASES if name != "profiles" or config.profile_seconds]


def measure(config: Config, names: list[str], keep: bool) -> dict[str, Any]:
    """The phases `names` on a stack of their own in a work folder, which is deleted unless
    `keep` or the run failed (its logs are there)."""
    root = Path(tempfile.mkdtemp(prefix="aitbc-bench-"))
    bench = Bench(config, root)

    def terminate(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    ok = False
    try:
        results = uvloop.run(run(bench, names))
        ok = True
    finally:
        bench.stack.stop_all()
        drop_keys_database(bench)
        if ok and not keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"work folder (logs): {root}", file=sys.stderr)
    return results


def drop_keys_database(bench: Bench) -> None:
    """Drop the run's own PostgreSQL database, if it has one. A failure is printed, not raised:
    it must not hide the run's own error, and the name says what to drop by hand."""
    try:
        asyncio.run(bench.keys_database.drop())
    except Exception as error:  # reported below; the run's own outcome stands
        name = bench.keys_database.name
        print(f"could not drop the run's keys database {name}: {error!r}", file=sys.stderr)


def write_report(results: dict[str, Any], name: str, quick: bool) -> None:
    """bench/results/<name>.json and .md: latest (a full run), quick, or only (some phases)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text(report.markdown(results, quick=quick))
    print(report.table(results))
    print(f"\nwritten: {RESULTS / (name + '.md')} and {name}.json")


def main() -> int:
    """0 when every target is met; 1 when one is missed (the report is written all the same)."""
    args = parse_args()
    config = Config.of(args.quick, args.profile)
    results = measure(config, phase_names(args.only, config), args.keep)
    if args.only:
        results["only"] = args.only
    name = "only" if args.only else "quick" if config.quick else "latest"
    write_report(results, name, config.quick)
    missed = report.missed(results)
    if missed:
        names = "; ".join(row.what for row in missed)
        print(f"{len(missed)} target(s) missed: {names}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
