"""`just bench [--quick]`: every benchmark of issue 5 in one process tree, then the report.

Phases, in order (each figure's method is described in bench/README.md):
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
import asyncio
import gc
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nats
import uvloop

from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import hash_key
from aitbc_contracts.subjects import (
    KEY_EVENTS_STREAM,
    KEYS_CHECK,
    KEYS_COMMANDS,
    USAGE_QUERY,
    usage_decide_subject,
)
from aitbc_contracts.usage import LastUsedQuery
from aitbc_keys.relay import ensure_stream
from bench import bus_load, http_load, machine, profiles, report, revocation
from bench.cpu import CpuMeter, load_average
from bench.httpclient import Connection, build_request, fan_out
from bench.null_responder import CHECK_SUBJECT, DECIDE_PREFIX
from bench.peer_app import create_database
from bench.seed import Seeded, seed
from bench.stack import ROOT, Proc, Stack, answered

RESULTS = ROOT / "bench" / "results"
PLAN_LIMITS = "free=60,pro=600,enterprise=100000000"  # the load can never reach a limit
CHECK_BATCH_SIZES = (1, 10, 100)  # hashes per CheckKeys in the auth phase, quick or not
CHECK_HEADLINE_BATCH = 100  # the size the target row judges


@dataclass(frozen=True)
class Config:
    quick: bool
    rounds: int  # A B C D rounds
    seconds: float  # wrk seconds per scenario per round
    warmup: float  # wrk seconds per scenario before the rounds
    connections: int
    paced_rounds: int
    paced_seconds: float
    bulk: int  # accounts with a master key each: auth checks, memory
    decision_accounts: int
    batch_sizes: tuple[int, ...]
    bus_rounds: int
    bus_seconds: float
    revocations: int
    load_accounts: int
    keys_per_account: int
    profile_seconds: float  # 0: no profiles

    @classmethod
    def of(cls, quick: bool, profile: bool | None) -> Config:
        if quick:  # about a minute: a smoke test that every phase works, not a result
            return cls(
                quick=True,
                rounds=2,
                seconds=2.0,
                warmup=1.0,
                connections=32,
                paced_rounds=1,
                paced_seconds=2.0,
                bulk=1_000,
                decision_accounts=1_000,
                batch_sizes=(100,),
                bus_rounds=1,
                bus_seconds=1.5,
                revocations=20,
                load_accounts=8,
                keys_per_account=64,
                profile_seconds=3.0 if profile else 0.0,
            )
        return cls(
            quick=False,
            rounds=5,
            seconds=8.0,
            warmup=2.0,
            connections=32,
            paced_rounds=3,
            paced_seconds=8.0,
            bulk=100_000,
            decision_accounts=10_000,
            batch_sizes=(1, 10, 100, 1000),
            bus_rounds=3,
            bus_seconds=2.0,
            revocations=200,
            load_accounts=8,
            keys_per_account=64,
            profile_seconds=0.0 if profile is False else 8.0,
        )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def against_ceiling(metered: dict[str, list[dict]], process: str) -> dict[str, Any]:
    """Median rates of `process` and of the bare responder run alternately with it."""
    rate = median([r["per_second"] for r in metered[process]])
    ceiling = median([r["per_second"] for r in metered["ceiling"]])
    return {
        "per_second": rate,
        "ceiling_per_second": ceiling,
        "ratio_to_ceiling": rate / ceiling,
        "runs": metered,
    }


def _rates(b: dict[str, Any]) -> str:
    return f"{b['per_second']:,.0f}/s (bare responder {b['ceiling_per_second']:,.0f}/s)"


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    def __init__(self, config: Config, root: Path) -> None:
        self.config = config
        self.root = root
        self.stack = Stack(root, PLAN_LIMITS)
        self.results: dict[str, Any] = {"config": asdict(config)}
        self.commands: list[str] = []
        self.seeded: Seeded | None = None

    # --- phases ------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.results["machine"] = machine.describe()
        self.results["load_average"] = {"start": load_average()}
        phases: dict[str, float] = {}
        self.results["phase_seconds"] = phases

        async def phase(name: str, step: Any) -> None:
            t = time.perf_counter()
            await step
            phases[name] = round(time.perf_counter() - t, 1)

        await phase("seed and start", self.start_and_seed())
        await phase("usage memory", self.usage_memory())
        t = time.perf_counter()
        self.start_http_side()
        phases["start HTTP side"] = round(time.perf_counter() - t, 1)
        gc.freeze()  # the seeded keys stay: no collection walks them while we measure
        async with self.bus() as nc:
            await phase("auth checks", self.auth_checks(nc))
            await phase("decisions", self.decisions(nc))
        await phase("HTTP rounds", self.http())
        await phase("paced", self.paced())
        if self.config.profile_seconds:
            await phase("profiles", self.profile())
        await phase("revocations", self.revocations())
        await phase("edge memory", self.edge_memory())
        self.results["commands"] = self.commands
        self.results["load_average"]["end"] = load_average()
        self.results["wall_seconds"] = time.perf_counter() - started
        return self.results

    def bus(self) -> Any:
        url = self.stack.nats.url

        class _Bus:
            async def __aenter__(self) -> nats.NATS:
                self.nc = await nats.connect(url, name="bench")
                return self.nc

            async def __aexit__(self, *_: object) -> None:
                await self.nc.close()

        return _Bus()

    async def start_and_seed(self) -> None:
        c = self.config
        say(f"seeding {c.bulk:,} accounts + {c.load_accounts}x{c.keys_per_account} keys ...")
        t = time.perf_counter()
        self.seeded = await seed(
            self.root / "keys.db", c.bulk, c.load_accounts, c.keys_per_account, c.revocations
        )
        seeding = time.perf_counter() - t
        stack = self.stack
        stack.nats.start()
        async with self.bus() as nc:
            # the stream exists before usage starts, so usage follows it from the first event
            await ensure_stream(nc.jetstream())
        stack.add("usage", [str(Path(sys.executable).parent / "aitbc-usage")]).start()
        self.spawn_http_side()  # they import while the relay works
        await answered(stack.nats.url, USAGE_QUERY, m.encoder.encode(LastUsedQuery("acc_ready")))
        await asyncio.sleep(1.0)
        self.usage_rss = [stack.procs["usage"].rss_kib()]  # knows no account yet
        stack.add("keys", [str(Path(sys.executable).parent / "aitbc-keys")]).start()
        t = time.perf_counter()
        await answered(stack.nats.url, KEYS_CHECK, m.encoder.encode(m.CheckKeys([])))
        async with self.bus() as nc:
            await self._until_relayed(nc, self.seeded.events)
            relayed = time.perf_counter() - t
            await self._check_seed(nc)
        say(f"seeded {self.seeded.events:,} events in {seeding:.1f}s, relayed in {relayed:.1f}s")
        self.results["seed"] = {
            "accounts": c.bulk + c.load_accounts + 1,
            "keys": c.bulk + c.load_accounts * (c.keys_per_account + 1) + c.revocations + 1,
            "events": self.seeded.events,
            "seed_seconds": seeding,
            "relay_seconds": relayed,
            "relay_events_per_second": self.seeded.events / relayed,
        }

    async def _until_relayed(self, nc: nats.NATS, events: int, timeout: float = 600) -> None:
        """Until the stream holds every event and every follower (usage) has read them all."""
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = await js.stream_info(KEY_EVENTS_STREAM)
            if info.state.messages >= events:
                consumers = await js.consumers_info(KEY_EVENTS_STREAM)
                if all(ci.delivered.stream_seq >= info.state.last_seq for ci in consumers):
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError("the relay did not publish the seeded events in time")

    async def _check_seed(self, nc: nats.NATS) -> None:
        """The keys service knows the seeded keys and accounts as its own commands made them."""
        assert self.seeded is not None
        samples = [
            (a.account_id, a.master_key)
            for a in self.seeded.bulk[:: max(1, len(self.seeded.bulk) // 20)]
        ]
        samples += self.seeded.load_keys()[::50]
        checks = m.CheckKeys([hash_key(key) for _, key in samples])
        checked = m.check_reply_decoder.decode(
            (await nc.request(KEYS_CHECK, m.encoder.encode(checks))).data
        )
        if not isinstance(checked, m.CheckedKeys):
            raise RuntimeError(f"the keys service refused the seed check: {checked!r}")
        for (account_id, _), reply in zip(samples, checked.replies, strict=True):
            if not isinstance(reply, m.KeyFacts) or reply.account_id != account_id:
                raise RuntimeError(f"seeded key not known to the keys service: {reply!r}")
        for account_id, _ in samples:
            view = m.reply_decoder.decode(
                (
                    await nc.request(
                        KEYS_COMMANDS, m.encoder.encode(m.GetAccount(account_id=account_id))
                    )
                ).data
            )
            if not isinstance(view, m.AccountView) or view.plan != "enterprise":
                raise RuntimeError(f"seeded account not known to the keys service: {view!r}")

    async def usage_memory(self) -> None:
        assert self.seeded is not None
        usage = self.stack.procs["usage"]
        await asyncio.sleep(1.0)
        self.usage_rss.append(usage.rss_kib())  # plans of every account learned from events
        accounts = [a.account_id for a in self.seeded.bulk]
        work = bus_load.decide_work(usage_decide_subject, accounts, 500)
        async with self.bus() as nc:
            outcome = await bus_load.decide_all(nc, work, 16)
        await asyncio.sleep(1.5)  # a snapshot or two
        self.usage_rss.append(usage.rss_kib())
        if outcome.get("admitted", 0) < len(accounts):
            raise RuntimeError(f"decisions for the seeded accounts: {outcome}")
        r0, r1, r2 = self.usage_rss
        n = len(accounts)
        self.results["usage_memory"] = {
            "accounts": n,
            "rss_kib": [r0, r1, r2],
            "bytes_per_account": (r2 - r0) * 1024 / n,
            "plan_book_bytes_per_account": (r1 - r0) * 1024 / n,
            "counters_bytes_per_account": (r2 - r1) * 1024 / n,
            "decisions": outcome,
        }
        say(f"usage memory: {(r2 - r0) * 1024 / n:.0f} B/account over {n:,} accounts")

    def spawn_http_side(self) -> None:
        """The HTTP side, started side by side without waiting: upstream, three edges (the
        second for revocation, the third for memory: both serve nothing until then), redis, the
        peer and the bare responder."""
        assert self.seeded is not None
        stack = self.stack
        self.spawned = [stack.start_coordinator(wait=False)]
        self.spawned += [stack.start_edge(n, wait=False) for n in ("edge", "edge2", "edge-memory")]
        redis = stack.start_redis(wait=False)
        peer_db = self.root / "peer.db"
        create_database(
            str(peer_db),
            ((hash_key(key), account, "enterprise") for account, key in self.seeded.load_keys()),
        )
        self.spawned += [redis, stack.start_peer(redis, peer_db, wait=False)]
        self.null = stack.start_null_responder("null")

    def start_http_side(self) -> None:
        stack = self.stack
        for proc in self.spawned:
            proc.wait()
        self.edge, self.peer = stack.procs["edge"], stack.procs["peer"]
        keys_file = self.root / "keys.txt"
        keys_file.write_text("\n".join(key for _, key in self.seeded.load_keys()) + "\n")
        accounts_file = self.root / "accounts.txt"
        accounts_file.write_text("\n".join(a.account_id for a in self.seeded.load) + "\n")
        upstream = stack.upstream_url
        self.targets = {
            "A": http_load.Target("A direct", upstream + "/v1/jobs", "X-Account-Id", accounts_file),
            "B": http_load.Target("B edge, public", self.edge.url + "/v1/health"),
            "C": http_load.Target("C edge, full", self.edge.url + "/v1/jobs", "X-API-Key",
                              keys_file),
            "D": http_load.Target("D peer", self.peer.url + "/v1/jobs", "X-API-Key", keys_file),
        }  # fmt: skip

    # --- bus benchmarks ----------------------------------------------------------------------

    async def _alternate(self, runs: dict[str, Any], rounds: int) -> dict[str, list[dict]]:
        """Each named run once per round, in order, round after round."""
        out: dict[str, list[dict]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                out[name].append(await run())
        return out

    async def auth_checks(self, nc: nats.NATS) -> None:
        """CheckKeys of 1, 10 and 100 hashes: the edge sends its cache misses in batches as
        large as the burst that missed (aitbc_api.batching), so each size is a load it makes."""
        assert self.seeded is not None
        c = self.config
        hashes = [hash_key(a.master_key) for a in self.seeded.bulk]
        concurrency = 128
        cpu_pids = {"keys": self.stack.procs["keys"].pid, "nats-server": self._nats_pid()}
        say(f"auth checks: {c.bus_rounds} rounds x {c.bus_seconds}s, {len(hashes):,} keys")
        cursor: dict[str, int] = {}  # every run asks keys the runs before did not

        def run(name: str, work: list) -> Any:
            async def go() -> dict:
                with CpuMeter(cpu_pids) as meter:
                    result = await bus_load.auth_checks(
                        nc, work, c.bus_seconds, concurrency, cursor.get(name, 0)
                    )
                cursor[name] = int(result["next"])
                result["cpu_seconds"] = meter.seconds
                result["others_cores"] = meter.others / meter.wall
                return result

            return go

        by_batch = {}
        for batch in CHECK_BATCH_SIZES:
            keys_work = bus_load.check_work(KEYS_CHECK, hashes, batch)
            null_work = bus_load.check_work(CHECK_SUBJECT, hashes, batch)
            await answered(self.stack.nats.url, CHECK_SUBJECT, null_work[0][1])
            for work in (keys_work, null_work):
                warm = await bus_load.auth_checks(nc, work, 1.0, concurrency, len(work) // 2)
                if warm["bad"] or warm["errors"]:
                    raise RuntimeError(f"auth checks refused or failed: {warm}")
            metered = await self._alternate(
                {
                    "ceiling": run(f"ceiling-{batch}", null_work),
                    "keys": run(f"keys-{batch}", keys_work),
                },
                c.bus_rounds,
            )
            by_batch[batch] = against_ceiling(metered, "keys")
            say(f"auth checks, batches of {batch}: {_rates(by_batch[batch])}")
        headline = by_batch[CHECK_HEADLINE_BATCH]
        self.results["auth_checks"] = {
            "distinct_keys": len(hashes),
            "concurrency": concurrency,
            "headline_batch": CHECK_HEADLINE_BATCH,
            "per_second": headline["per_second"],
            "ceiling_per_second": headline["ceiling_per_second"],
            "ratio_to_ceiling": headline["ratio_to_ceiling"],
            "by_batch": by_batch,
        }

    async def decisions(self, nc: nats.NATS) -> None:
        assert self.seeded is not None
        c = self.config
        accounts = [a.account_id for a in self.seeded.bulk[: c.decision_accounts]]
        concurrency = 32
        cpu_pids = {"usage": self.stack.procs["usage"].pid, "nats-server": self._nats_pid()}
        by_batch = {}
        for batch in c.batch_sizes:
            usage_work = bus_load.decide_work(usage_decide_subject, accounts, batch)
            null_work = bus_load.decide_work(lambda p: f"{DECIDE_PREFIX}.{p}", accounts, batch)
            check = await bus_load.decisions(nc, usage_work, 1.0, concurrency, verify=True)
            if check["bad"] or check["errors"]:
                raise RuntimeError(f"usage refused decisions: {check}")
            await bus_load.decisions(nc, null_work, 0.5, concurrency)

            def run(work: list) -> Any:
                async def go() -> dict:
                    with CpuMeter(cpu_pids) as meter:
                        result = await bus_load.decisions(nc, work, c.bus_seconds, concurrency)
                    result["cpu_seconds"] = meter.seconds
                    result["others_cores"] = meter.others / meter.wall
                    return result

                return go

            metered = await self._alternate(
                {"ceiling": run(null_work), "usage": run(usage_work)}, c.bus_rounds
            )
            by_batch[batch] = against_ceiling(metered, "usage")
            say(f"decisions, batches of {batch}: {_rates(by_batch[batch])}")
        headline = 100 if 100 in by_batch else max(by_batch)
        self.results["decisions"] = {
            "accounts": len(accounts),
            "concurrency": concurrency,
            "headline_batch": headline,
            "per_second": by_batch[headline]["per_second"],
            "by_batch": by_batch,
        }

    def _nats_pid(self) -> int:
        assert self.stack.nats.process is not None
        return self.stack.nats.process.pid

    # --- HTTP --------------------------------------------------------------------------------

    def _http_pids(self) -> dict[str, int]:
        names = ("edge", "coordinator", "usage", "keys", "peer", "redis")
        pids = {name: self.stack.procs[name].pid for name in names}
        pids["nats-server"] = self._nats_pid()
        return pids

    async def http(self) -> None:
        c = self.config
        assert self.seeded is not None
        for name in ("C", "D"):  # every key once: the edge's cache and the peer's pages warm
            url = self.targets[name].url
            requests = [build_request(url, {"X-API-Key": k}) for _, k in self.seeded.load_keys()]
            statuses = await fan_out(url, requests, c.connections)
            if statuses.get(200, 0) != len(requests):
                raise RuntimeError(f"warming {self.targets[name].name}: {statuses}")
        for target in self.targets.values():
            self.commands.append(" ".join(target.wrk_argv(c.seconds, c.connections, 1)))
            say(f"warm-up {target.name} ({c.warmup}s)")
            warm = await http_load.wrk(target, c.warmup, c.connections)
            if warm["non_2xx"] or warm["socket_errors"]:
                raise RuntimeError(f"{target.name} is not answering 2xx: {warm}")
        runs: dict[str, list[dict]] = {name: [] for name in self.targets}
        for round_ in range(c.rounds):
            for name, target in self.targets.items():
                with CpuMeter(self._http_pids()) as meter:
                    result = await http_load.wrk(target, c.seconds, c.connections)
                result["cpu_seconds"] = meter.seconds
                result["wall_seconds"] = meter.wall
                result["others_cores"] = meter.others / meter.wall
                runs[name].append(result)
            line = "  ".join(f"{n} {runs[n][-1]['rps']:,.0f}/s" for n in self.targets)
            say(f"round {round_ + 1}/{c.rounds}: {line}")
        scenarios = {}
        for name, results in runs.items():
            rps = median([r["rps"] for r in results])
            cpu_us = {
                proc: median([r["cpu_seconds"][proc] / r["requests"] * 1e6 for r in results])
                for proc in results[0]["cpu_seconds"]
            }
            scenarios[name] = {
                "name": self.targets[name].name,
                "url": self.targets[name].url,
                "rps": rps,
                "p50_ms": median([r["p50_ms"] for r in results]),
                "p99_ms": median([r["p99_ms"] for r in results]),
                "non_2xx": sum(r["non_2xx"] for r in results),
                "socket_errors": sum(r["socket_errors"] for r in results),
                "cpu_us_per_request": cpu_us,
                "runs": results,
            }
        s = scenarios

        def paired(top: str, bottom: str) -> list[float]:
            """Per-round ratios: each pair ran back to back, so the machine's noise mostly
            cancels; their median is the headline."""
            return [t["rps"] / b["rps"] for t, b in zip(runs[top], runs[bottom], strict=True)]

        per_round = {"C/B": paired("C", "B"), "C/D": paired("C", "D"), "C/A": paired("C", "A")}
        self.results["http"] = {
            "scenarios": s,
            "ratios": {name: median(values) for name, values in per_round.items()},
            "ratios_of_medians": {
                "C/B": s["C"]["rps"] / s["B"]["rps"],
                "C/D": s["C"]["rps"] / s["D"]["rps"],
                "C/A": s["C"]["rps"] / s["A"]["rps"],
                "B/A": s["B"]["rps"] / s["A"]["rps"],
            },
            "per_round_ratios": per_round,
            "edge_metrics": await self._metrics(self.edge),
        }

    async def _metrics(self, edge: Proc) -> dict[str, float]:
        """The edge's own counters (/metrics), for the mean size of its decision batches."""
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
        writer.write(build_request(edge.url + "/metrics", {"Connection": "close"}))
        data = (await reader.read()).decode(errors="replace")
        writer.close()
        values: dict[str, float] = {}
        for line in data.split("\r\n\r\n", 1)[-1].splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    values[name] = float(value)
                except ValueError:
                    continue
        return values

    async def paced(self) -> None:
        c = self.config
        rate = self.results["http"]["scenarios"]["C"]["rps"] / 2
        say(f"paced: B and C at {rate:,.0f}/s (half C's peak), {c.paced_rounds} rounds")
        runs: dict[str, list[dict]] = {"B": [], "C": []}
        for name in runs:
            self.commands.append(
                " ".join(self.targets[name].paced_argv(rate, c.paced_seconds, c.connections))
            )
        assert self.seeded is not None
        probe_work = bus_load.decide_work(
            usage_decide_subject, [self.seeded.bulk[-1].account_id], 1
        )[0]
        async with self.bus() as nc:
            for _ in range(c.paced_rounds):
                for name in runs:
                    stop = asyncio.Event()
                    probe = asyncio.create_task(
                        bus_load.probe(nc, probe_work[0], probe_work[1], stop)
                    )
                    with CpuMeter(self._http_pids()) as meter:
                        result = await http_load.paced(
                            self.targets[name], rate, c.paced_seconds, c.connections
                        )
                    stop.set()
                    rtts = await probe
                    result["others_cores"] = meter.others / meter.wall
                    result["busy_cores"] = (sum(meter.seconds.values()) + meter.others) / meter.wall
                    result["cpu_us_per_request"] = {
                        who: seconds / result["requests"] * 1e6
                        for who, seconds in meter.seconds.items()
                    }
                    result["decision_probe_p50_ms"] = percentile(rtts, 50)
                    result["decision_probe_p99_ms"] = percentile(rtts, 99)
                    result["decision_probe_max_ms"] = max(rtts)
                    runs[name].append(result)
        summary = {
            name: {
                key: median([r[key] for r in results])
                for key in (
                    "achieved_rate",
                    "p50_ms",
                    "p99_ms",
                    "wire_p50_ms",
                    "wire_p99_ms",
                    "decision_probe_p50_ms",
                    "decision_probe_p99_ms",
                    "others_cores",
                    "busy_cores",
                )
            }
            | {
                "cpu_us_per_request": {
                    who: median([r["cpu_us_per_request"][who] for r in results])
                    for who in results[0]["cpu_us_per_request"]
                }
            }
            for name, results in runs.items()
        }
        differences = [
            c_["p99_ms"] - b["p99_ms"] for b, c_ in zip(runs["B"], runs["C"], strict=True)
        ]
        wire = [
            c_["wire_p99_ms"] - b["wire_p99_ms"] for b, c_ in zip(runs["B"], runs["C"], strict=True)
        ]
        self.results["paced"] = {
            "rate": rate,
            "summary": summary,
            "p99_difference_ms": median(differences),  # paired, round by round
            "wire_p99_difference_ms": median(wire),
            "per_round_p99_differences_ms": differences,
            "runs": runs,
            "bus_floor": await self.bus_floor(rate, c.paced_seconds / 2),
        }
        say(f"paced: p99 B {summary['B']['p99_ms']:.2f} ms, C {summary['C']['p99_ms']:.2f} ms")

    async def bus_floor(self, rate: float, seconds: float) -> dict[str, float]:
        """CPU one bare request/reply costs nats-server and a bare nats-py responder at the
        paced rate: the least a decision's round trip adds to C, beyond the edge's own share."""
        pids = {"nats-server": self._nats_pid(), "responder": self.null.pid}
        async with self.bus() as nc:
            with CpuMeter(pids) as meter:
                sent = await bus_load.paced_round_trips(
                    nc, f"{DECIDE_PREFIX}.0", b'{"items": []}', rate, seconds
                )
        return {name: meter.seconds[name] / sent * 1e6 for name in pids} | {"rate": rate}

    # --- profiles ----------------------------------------------------------------------------

    async def profile(self) -> None:
        c = self.config
        seconds = c.profile_seconds
        out_dir = RESULTS / ("profiles-quick" if c.quick else "profiles")
        out_dir.mkdir(parents=True, exist_ok=True)
        found: dict[str, Any] = {}
        for name in ("B", "C"):
            say(f"profiling the edge (and usage) under {self.targets[name].name} ({seconds:.0f}s)")
            load = asyncio.create_task(
                http_load.wrk(self.targets[name], seconds + 2, c.connections)
            )
            await asyncio.sleep(1.0)
            recordings = [profiles.record(self.edge.pid, seconds, out_dir / f"edge-{name}.txt")]
            if name == "C":  # the usage process's share of the full path
                usage_pid = self.stack.procs["usage"].pid
                recordings.append(profiles.record(usage_pid, seconds, out_dir / "usage-C.txt"))
            folded = await asyncio.gather(*recordings)
            result = await load
            summary = profiles.summarize(folded[0])
            summary["rps_while_profiled"] = result["rps"]
            found[f"edge-{name}"] = summary
            if name == "C":
                found["usage-C"] = profiles.summarize(folded[1])
        async with self.bus() as nc:
            assert self.seeded is not None
            accounts = [a.account_id for a in self.seeded.bulk[: c.decision_accounts]]
            work = bus_load.decide_work(usage_decide_subject, accounts, 100)
            say("profiling usage under decisions (batches of 100)")
            load = asyncio.create_task(bus_load.decisions(nc, work, seconds + 2, 32))
            await asyncio.sleep(1.0)
            folded = await profiles.record(
                self.stack.procs["usage"].pid, seconds, out_dir / "usage-decide.txt"
            )
            await load
            found["usage-decide"] = profiles.summarize(folded)
            hashes = [hash_key(a.master_key) for a in self.seeded.bulk]
            say("profiling keys under auth checks")
            load = asyncio.create_task(
                bus_load.auth_checks(nc, bus_load.check_work(KEYS_CHECK, hashes), seconds + 2, 128)
            )
            await asyncio.sleep(1.0)
            folded = await profiles.record(
                self.stack.procs["keys"].pid, seconds, out_dir / "keys-check.txt"
            )
            await load
            found["keys-check"] = profiles.summarize(folded)
        self.results["profiles"] = found

    # --- revocation and memory ---------------------------------------------------------------

    async def revocations(self) -> None:
        assert self.seeded is not None
        second = self.stack.procs["edge2"]
        await self._until_healthy(second)
        account = self.seeded.revoke
        keys = account.keys[: self.config.revocations]
        say(f"revocations: {len(keys)} keys, each in use on two edges")
        per_edge = await revocation.revocations(
            [self.edge.url, second.url], keys, account.master_key
        )
        self.results["revocation"] = {
            "revocations": len(keys),
            "edges": [
                {
                    "edge": name,
                    "p50_ms": percentile(ms, 50),
                    "p99_ms": percentile(ms, 99),
                    "max_ms": max(ms),
                    "min_ms": min(ms),
                    "all_ms": ms,
                }
                for name, ms in zip(("revoking edge", "other edge"), per_edge, strict=True)
            ],
        }
        self.stack.stop("edge2")
        e = self.results["revocation"]["edges"]
        say(f"revocation p99: revoking edge {e[0]['p99_ms']:.1f} ms, other {e[1]['p99_ms']:.1f} ms")

    async def _until_healthy(self, edge: Proc) -> None:
        connection = Connection.to(edge.url)
        try:
            for _ in range(200):
                if await connection.send(build_request(edge.url + "/v1/health")) == 200:
                    return
                await asyncio.sleep(0.05)
        finally:
            connection.close()
        raise RuntimeError(f"{edge.name} never became healthy")

    async def _buffered(self, edge: Proc) -> int:
        """The edge's own gauge of usage events not yet published."""
        metrics = await self._metrics(edge)
        if "aitbc_usage_events_buffered" not in metrics:
            raise RuntimeError("no usage buffer gauge in the edge's /metrics")
        return int(metrics["aitbc_usage_events_buffered"])

    async def _settle(self, edge: Proc) -> None:
        for _ in range(600):
            if await self._buffered(edge) == 0:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)

    async def edge_memory(self) -> None:
        """A fresh edge caches every bulk key: one authenticated request each, on a route that
        answers after the gate without going upstream (GET /v1/api-keys/<not an id>: the master
        key is authenticated, given a rate-limit decision and a usage event, then 404)."""
        assert self.seeded is not None
        edge = self.stack.procs["edge-memory"]
        await self._until_healthy(edge)
        url = edge.url + "/v1/api-keys/none"
        one = self.seeded.revoke.master_key
        warm = [build_request(url, {"X-API-Key": one})] * (300 if self.config.quick else 2_000)
        await fan_out(edge.url, warm, 32)  # steady state: pools, buffers, arenas
        await self._settle(edge)
        before = edge.rss_kib()
        keys = [a.master_key for a in self.seeded.bulk]
        say(f"edge memory: caching {len(keys):,} keys through a fresh edge")
        t = time.perf_counter()
        statuses = await fan_out(edge.url, [build_request(url, {"X-API-Key": k}) for k in keys], 32)
        fill_seconds = time.perf_counter() - t
        await self._settle(edge)
        after = edge.rss_kib()
        if statuses.get(404, 0) != len(keys):
            raise RuntimeError(f"filling the edge's cache: {statuses}")
        self.results["edge_memory"] = {
            "keys": len(keys),
            "rss_kib": [before, after],
            "bytes_per_key": (after - before) * 1024 / len(keys),
            "fill_seconds": fill_seconds,
            "fill_rps_cache_misses": len(keys) / fill_seconds,
        }
        self.stack.stop("edge-memory")
        say(f"edge memory: {(after - before) * 1024 / len(keys):.0f} B/key")


def main() -> None:
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
    args = parser.parse_args()
    config = Config.of(args.quick, args.profile)
    root = Path(tempfile.mkdtemp(prefix="aitbc-bench-"))
    bench = Bench(config, root)

    def terminate(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    ok = False
    try:
        results = uvloop.run(bench.run())
        ok = True
    finally:
        bench.stack.stop_all()
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"work folder (logs): {root}", file=sys.stderr)
    name = "quick" if config.quick else "latest"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = report.markdown(results, quick=config.quick)
    (RESULTS / f"{name}.md").write_text(text)
    print(report.table(results))
    print(f"\nwritten: {RESULTS / (name + '.md')} and {name}.json")


if __name__ == "__main__":
    main()
