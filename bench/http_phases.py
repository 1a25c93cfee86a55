"""HTTP phases: A E B C R D N with wrk, B and C paced at half C's peak (and the bus floor),
profiles (the Coordinator under A, the gated one under E, the edge under B and C)."""

from __future__ import annotations

import asyncio
from typing import Any

from aitbc_contracts.keyformat import hash_key
from aitbc_contracts.subjects import KEYS_CHECK, usage_decide_subject
from bench import bus_load, http_load, profiles
from bench.common import RESULTS, edge_metrics, median, percentile, say
from bench.cpu import CpuMeter
from bench.httpclient import build_request, fan_out
from bench.null_responder import DECIDE_PREFIX
from bench.state import GATED, Bench

# The server under test in each scenario: it gets a CPU of its own (Bench.place).
# C2's two workers share both cores with everything else (None: no placement): its figures
# beside C's say what a second worker buys when the load generator is on the same machine.
SERVER = {"A": "coordinator", "E": GATED, "B": "edge", "C": "edge", "C2": None, "R": "edge",
          "D": "peer", "N": "nginx"}  # fmt: skip
# The ratios of scenarios' rates, each paired round by round: (top, bottom)
PAIRS = {"C/B": ("C", "B"), "C/D": ("C", "D"), "C/A": ("C", "A"), "E/A": ("E", "A"),
         "C/E": ("C", "E"), "R/C": ("R", "C"), "B/A": ("B", "A"), "N/A": ("N", "A"),
         "B/N": ("B", "N"), "C2/C": ("C2", "C")}  # fmt: skip


async def http(b: Bench) -> None:
    await _warm(b)
    runs = await _rounds(b)
    s = {name: _scenario(b, name, results) for name, results in runs.items()}

    def paired(top: str, bottom: str) -> list[float]:
        """Per-round ratios: each pair ran back to back, so the machine's noise mostly
        cancels; their median is the headline."""
        return [t["rps"] / b["rps"] for t, b in zip(runs[top], runs[bottom], strict=True)]

    pairs = {name: pair for name, pair in PAIRS.items() if set(pair) <= set(runs)}  # N: nginx
    per_round = {name: paired(top, bottom) for name, (top, bottom) in pairs.items()}
    of_medians = {name: s[top]["rps"] / s[bottom]["rps"] for name, (top, bottom) in pairs.items()}
    b.results["http"] = {
        "scenarios": s,
        "ratios": {name: median(values) for name, values in per_round.items()},
        "ratios_of_medians": of_medians,
        "per_round_ratios": per_round,
        "edge_metrics": await edge_metrics(b.edge),
    }


async def _warm(b: Bench) -> None:
    """Every load key once through C, D and E, and every restricted one through R (the edge's
    and the gated Coordinator's caches and the peer's pages warm), then each scenario under wrk
    for the warm-up time."""
    c = b.config
    assert b.seeded is not None
    for name in ("C", "C2", "D", "E", "R"):
        url = b.targets[name].url
        keys = b.seeded.restricted_keys() if name == "R" else b.seeded.load_keys()
        requests = [build_request(url, {"X-API-Key": k}) for _, k in keys]
        statuses = await fan_out(url, requests, c.connections)
        if statuses.get(200, 0) != len(requests):
            raise RuntimeError(f"warming {b.targets[name].name}: {statuses}")
    for name, target in b.targets.items():
        b.place(SERVER[name])
        b.commands.append(" ".join(target.wrk_argv(c.seconds, c.connections, 1)))
        say(f"warm-up {target.name} ({c.warmup}s)")
        warm = await http_load.wrk(target, c.warmup, c.connections)
        if warm["non_2xx"] or warm["socket_errors"]:
            raise RuntimeError(f"{target.name} is not answering 2xx: {warm}")


async def _rounds(b: Bench) -> dict[str, list[dict]]:
    """A E B C R D N, round after round, each with the CPU every process of the stack spent."""
    c = b.config
    runs: dict[str, list[dict]] = {name: [] for name in b.targets}
    for round_ in range(c.rounds):
        for name, target in b.targets.items():
            b.place(SERVER[name])
            with CpuMeter(b._http_pids()) as meter:
                result = await http_load.wrk(target, c.seconds, c.connections)
            result["cpu_seconds"] = meter.seconds
            result["wall_seconds"] = meter.wall
            result["edge_waited_ms_per_s"] = meter.waited["edge"] / meter.wall * 1000
            result["others_cores"] = meter.others / meter.wall
            runs[name].append(result)
        line = "  ".join(f"{n} {runs[n][-1]['rps']:,.0f}/s" for n in b.targets)
        say(f"round {round_ + 1}/{c.rounds}: {line}")
    return runs


def _scenario(b: Bench, name: str, results: list[dict]) -> dict[str, Any]:
    """One scenario's medians over its rounds."""
    cpu_us = {
        proc: median([r["cpu_seconds"][proc] / r["requests"] * 1e6 for r in results])
        for proc in results[0]["cpu_seconds"]
    }
    return {
        "name": b.targets[name].name,
        "url": b.targets[name].url,
        "rps": median([r["rps"] for r in results]),
        "p50_ms": median([r["p50_ms"] for r in results]),
        "p99_ms": median([r["p99_ms"] for r in results]),
        "non_2xx": sum(r["non_2xx"] for r in results),
        "socket_errors": sum(r["socket_errors"] for r in results),
        "cpu_us_per_request": cpu_us,
        "runs": results,
    }


PACED_SUMMARY = (
    "achieved_rate",
    "p50_ms",
    "p99_ms",
    "wire_p50_ms",
    "wire_p99_ms",
    "decision_probe_p50_ms",
    "decision_probe_p99_ms",
    "others_cores",
    "edge_waited_ms_per_s",
    "busy_cores",
)


async def paced(b: Bench) -> None:
    c = b.config
    rate = b.results["http"]["scenarios"]["C"]["rps"] / 2
    say(f"paced: B and C at {rate:,.0f}/s (half C's peak), {c.paced_rounds} rounds")
    runs: dict[str, list[dict]] = {"B": [], "C": []}
    pooled: dict[str, list[float]] = {"B": [], "C": []}  # every request of every round
    for name in runs:
        b.commands.append(
            " ".join(b.targets[name].paced_argv(rate, c.paced_seconds, c.connections))
        )
    assert b.seeded is not None
    b.place("edge")
    probe = bus_load.decide_work(usage_decide_subject, [b.seeded.bulk[-1].account_id], 1)[0]
    async with b.bus() as nc:
        for _ in range(c.paced_rounds):
            for name in runs:
                result = await paced_run(b, nc, name, rate, probe)
                pooled[name] += result.pop("from_schedule_ms")
                runs[name].append(result)
    summary = {name: paced_summary(results) for name, results in runs.items()}
    differences = [c_["p99_ms"] - b["p99_ms"] for b, c_ in zip(runs["B"], runs["C"], strict=True)]
    wire = [
        c_["wire_p99_ms"] - b["wire_p99_ms"] for b, c_ in zip(runs["B"], runs["C"], strict=True)
    ]
    pooled_p99 = {name: percentile(latencies, 99) for name, latencies in pooled.items()}
    b.results["paced"] = {
        "rate": rate,
        "summary": summary,
        "p99_difference_ms": median(differences),  # paired, round by round
        # the p99 of all the rounds' requests together: a round's p99 rests on its ~1% slowest
        # requests (a few dozen), so one pause of the machine sets it; pooled, on hundreds
        "pooled_p99_ms": pooled_p99,
        "pooled_requests": {name: len(latencies) for name, latencies in pooled.items()},
        "pooled_p99_difference_ms": pooled_p99["C"] - pooled_p99["B"],
        "wire_p99_difference_ms": median(wire),
        "per_round_p99_differences_ms": differences,
        "runs": runs,
        "bus_floor": await bus_floor(b, rate, c.paced_seconds / 2),
    }
    say(f"paced: p99 B {summary['B']['p99_ms']:.2f} ms, C {summary['C']['p99_ms']:.2f} ms")


async def paced_run(
    b: Bench, nc: Any, name: str, rate: float, probe_work: tuple[str, bytes, int]
) -> dict[str, Any]:
    """One paced run of scenario `name`, with a decision probe (`probe_work`) on the bus."""
    c = b.config
    stop = asyncio.Event()
    probe = asyncio.create_task(bus_load.probe(nc, probe_work[0], probe_work[1], stop))
    with CpuMeter(b._http_pids()) as meter:
        result = await http_load.paced(b.targets[name], rate, c.paced_seconds, c.connections)
    stop.set()
    rtts = await probe
    result["others_cores"] = meter.others / meter.wall
    result["edge_waited_ms_per_s"] = meter.waited["edge"] / meter.wall * 1000
    result["busy_cores"] = (sum(meter.seconds.values()) + meter.others) / meter.wall
    result["cpu_us_per_request"] = {
        who: seconds / result["requests"] * 1e6 for who, seconds in meter.seconds.items()
    }
    result["decision_probe_p50_ms"] = percentile(rtts, 50)
    result["decision_probe_p99_ms"] = percentile(rtts, 99)
    result["decision_probe_max_ms"] = max(rtts)
    return result


def paced_summary(results: list[dict]) -> dict[str, Any]:
    """One scenario's medians over its paced rounds."""
    cpu = {
        who: median([r["cpu_us_per_request"][who] for r in results])
        for who in results[0]["cpu_us_per_request"]
    }
    return {key: median([r[key] for r in results]) for key in PACED_SUMMARY} | {
        "cpu_us_per_request": cpu
    }


async def bus_floor(b: Bench, rate: float, seconds: float) -> dict[str, float]:
    """CPU one bare request/reply costs nats-server and a bare nats-py responder at the
    paced rate: the least a decision's round trip adds to C, beyond the edge's own share."""
    pids = {"nats-server": b._nats_pid(), "responder": b.null.pid}
    async with b.bus() as nc:
        with CpuMeter(pids) as meter:
            sent = await bus_load.paced_round_trips(
                nc, f"{DECIDE_PREFIX}.0", b'{"items": []}', rate, seconds
            )
    return {name: meter.seconds[name] / sent * 1e6 for name in pids} | {"rate": rate}


async def profile(b: Bench) -> None:
    c = b.config
    seconds = c.profile_seconds
    out_dir = RESULTS / ("profiles-quick" if c.quick else "profiles")
    out_dir.mkdir(parents=True, exist_ok=True)
    found: dict[str, Any] = {}
    for name in ("A", "E", "B", "C"):  # A and E: what the gate in process adds, side by side
        placed = SERVER[name]
        assert placed is not None  # (C2 is not profiled)
        server = b.stack.procs[placed]
        profiled = f"{'coordinator' if name in ('A', 'E') else 'edge'}-{name}"
        b.place(server.name)
        say(f"profiling {server.name} under {b.targets[name].name} ({seconds:.0f}s)")
        load = asyncio.create_task(http_load.wrk(b.targets[name], seconds + 2, c.connections))
        await asyncio.sleep(1.0)
        recordings = [profiles.record(server.pid, seconds, out_dir / f"{profiled}.txt")]
        if name == "C":  # the usage process's share of the full path
            usage_pid = b.stack.procs["usage"].pid
            recordings.append(profiles.record(usage_pid, seconds, out_dir / "usage-C.txt"))
        folded = await asyncio.gather(*recordings)
        result = await load
        summary = profiles.summarize(folded[0])
        summary["rps_while_profiled"] = result["rps"]
        found[profiled] = summary
        if name == "C":
            found["usage-C"] = profiles.summarize(folded[1])
    b.place(None)
    async with b.bus() as nc:
        assert b.seeded is not None
        accounts = [a.account_id for a in b.seeded.bulk[: c.decision_accounts]]
        work = bus_load.decide_work(usage_decide_subject, accounts, 100)
        say("profiling usage under decisions (batches of 100)")
        load = asyncio.create_task(bus_load.decisions(nc, work, seconds + 2, 32))
        await asyncio.sleep(1.0)
        folded = await profiles.record(
            b.stack.procs["usage"].pid, seconds, out_dir / "usage-decide.txt"
        )
        await load
        found["usage-decide"] = profiles.summarize(folded)
        hashes = [hash_key(a.master_key) for a in b.seeded.bulk]
        say("profiling keys under auth checks")
        load = asyncio.create_task(
            bus_load.auth_checks(nc, bus_load.check_work(KEYS_CHECK, hashes), seconds + 2, 128)
        )
        await asyncio.sleep(1.0)
        folded = await profiles.record(
            b.stack.procs["keys"].pid, seconds, out_dir / "keys-check.txt"
        )
        await load
        found["keys-check"] = profiles.summarize(folded)
    b.results["profiles"] = found
