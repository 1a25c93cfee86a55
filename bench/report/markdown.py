"""The whole report as Markdown (bench/results/latest.md), section by section."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.report.bus import bus_sections
from bench.report.edge import edge_sections
from bench.report.format import md_table, noise_note
from bench.report.http import http_section
from bench.report.partitions import partitions_section
from bench.report.profiles import profile_section
from bench.report.targets import targets

RESULTS = Path(__file__).resolve().parent.parent / "results"
ANALYSIS = RESULTS / "ANALYSIS.md"


def _flags(r: dict[str, Any], quick: bool) -> str:
    """The options of the run: --quick, --only NAMES."""
    only = r.get("only")
    return (" --quick" if quick else "") + (f" --only {','.join(only)}" if only else "")


def _title(r: dict[str, Any], quick: bool) -> str:
    if r.get("only"):
        return "# Benchmark results (--only: some phases, not the record)"
    return "# Benchmark results" + (" (--quick: a smoke run, not the record)" if quick else "")


def _machine(r: dict[str, Any], quick: bool) -> list[str]:
    m = r["machine"]
    return [
        _title(r, quick),
        "",
        f"Written by `just bench{_flags(r, quick)}` on "
        f"{r.get('finished') or time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"in {r['wall_seconds']:.0f} s, "
        f"at commit {m['commit']}. Method: bench/README.md.",
        "",
        "## Machine",
        "",
        f"- {m['nproc']} CPUs: {m['cpu_model']}; {m['memory']} RAM; Linux {m['kernel']}",
        f"- Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- {m['nats_server']}; {m['redis_server'].split(' sha=')[0]}; "
        f"{m['wrk'].split(' Copyright')[0]}",
        "- Everything on loopback, in one process tree: nats-server, keys, usage, the sample "
        "Coordinator, the edge(s), redis-server, the peer app, and the load generators.",
        f"- The keys database: {r.get('keys_database', 'SQLite')} (bench/keys_database.py).",
        "",
    ]


def _targets(r: dict[str, Any]) -> list[str]:
    rows = [
        [what, value, target, "met" if met else f"**missed**: {off}"]
        for what, value, target, met, off in targets(r)
    ]
    return [
        "## Targets",
        "",
        *noise_note(r),
        md_table(["target", "measured", "target", "result"], rows),
        "",
    ]


def _commands(r: dict[str, Any], quick: bool) -> list[str]:
    flag = _flags(r, quick)
    s = r.get("seed", {})
    return [
        "## Commands",
        "",
        f"`just bench{flag}` ran `python -m bench{flag}`, "
        f"which seeded {s.get('accounts', 0):,} accounts and {s.get('keys', 0):,} keys "
        f"({s.get('events', 0):,} events, written in {s.get('seed_seconds', 0):.1f} s, relayed to "
        f"JetStream by the keys service in {s.get('relay_seconds', 0):.1f} s) and ran, among "
        "others (ports are free ports picked at run time; the lists of keys and account ids are "
        "files it wrote):",
        "",
        "```",
        *r.get("commands", []),
        "```",
        "",
        f"Settings: {r['config']}",
        "",
    ]


def markdown(r: dict[str, Any], quick: bool) -> str:
    out = [*_machine(r, quick), *_targets(r)]
    if r.get("http"):
        out += [*http_section(r), ""]
    out += bus_sections(r)
    out += edge_sections(r)
    out += profile_section(r)
    out += partitions_section(r)
    if ANALYSIS.exists() and not quick and not r.get("only"):
        out += [ANALYSIS.read_text().strip(), ""]
    out += _commands(r, quick)
    return "\n".join(out)
