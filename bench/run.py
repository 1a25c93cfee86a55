"""`just bench [--quick]`: every benchmark of issue 5 in one process tree, then the report.

The run's state (stack, seeded accounts, targets, results) lives here; the phases are in
bench/bus_phases.py, bench/http_phases.py and bench/edge_phases.py. Phases, in order (each
figure's method is described in bench/README.md):
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
import os
import random
import shutil
import signal
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
)
from aitbc_contracts.usage import LastUsedQuery
from aitbc_keys.relay import ensure_stream
from bench import (
    bus_phases,
    edge_phases,
    http_load,
    http_phases,
    machine,
    report,
)
from bench.common import RESULTS, say
from bench.cpu import load_average, pin
from bench.peer_app import create_database
from bench.seed import Seeded, seed
from bench.stack import Stack, answered

PLAN_LIMITS = "free=60,pro=600,enterprise=100000000"  # the load can never reach a limit


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
        # Many short rounds rather than a few long ones: this machine's speed drifts by tens of
        # percent within seconds, and the ratios pair scenarios measured one after the other.
        return cls(
            quick=False,
            rounds=8,
            seconds=5.0,
            warmup=2.0,
            connections=32,
            paced_rounds=8,
            paced_seconds=5.0,
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


class Bench:
    def __init__(self, config: Config, root: Path) -> None:
        self.config = config
        self.root = root
        self.stack = Stack(root, PLAN_LIMITS)
        self.results: dict[str, Any] = {"config": asdict(config)}
        self.commands: list[str] = []
        self.seeded: Seeded | None = None
        self.cpus = sorted(os.sched_getaffinity(0))

    # --- phases ------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.results["machine"] = machine.describe()
        self.results["placement"] = (
            {"server": self.cpus[:1], "rest": self.cpus[1:]} if len(self.cpus) > 1 else None
        )
        self.results["load_average"] = {"start": load_average()}
        phases: dict[str, float] = {}
        self.results["phase_seconds"] = phases

        async def phase(name: str, step: Any) -> None:
            t = time.perf_counter()
            await step
            phases[name] = round(time.perf_counter() - t, 1)

        await phase("seed and start", self.start_and_seed())
        await phase("usage memory", bus_phases.usage_memory(self))
        t = time.perf_counter()
        self.start_http_side()
        phases["start HTTP side"] = round(time.perf_counter() - t, 1)
        gc.freeze()  # the seeded keys stay: no collection walks them while we measure
        async with self.bus() as nc:
            await phase("auth checks", bus_phases.auth_checks(self, nc))
            await phase("decisions", bus_phases.decisions(self, nc))
        await phase("HTTP rounds", http_phases.http(self))
        await phase("paced", http_phases.paced(self))
        if self.config.profile_seconds:
            await phase("profiles", http_phases.profile(self))
        self.place(None)
        await phase("revocations", edge_phases.revocations(self))
        await phase("edge memory", edge_phases.edge_memory(self))
        self.results["commands"] = self.commands
        self.results["load_average"]["end"] = load_average()
        self.results["wall_seconds"] = time.perf_counter() - started
        self.results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
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
        # Shuffled, so the accounts' requests interleave as independent clients' do: the load
        # generators walk the file in order, and grouped by account, each account would get
        # all its keys' requests in a row, then none for the rest of the pass.
        keys = [key for _, key in self.seeded.load_keys()]
        random.Random(5).shuffle(keys)
        keys_file = self.root / "keys.txt"
        keys_file.write_text("\n".join(keys) + "\n")
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

    def _nats_pid(self) -> int:
        assert self.stack.nats.process is not None
        return self.stack.nats.process.pid

    # --- HTTP --------------------------------------------------------------------------------

    def place(self, server: str | None) -> None:
        """The server under test alone on the first CPU, and everything else on the others: the
        rest of the stack, and the load generators and profilers this process starts. The
        deployment DESIGN.md intends gives the edge machines of their own; on shared cores, the
        usage service's and nats-server's bursts would queue the edge behind them. None: every
        process on every CPU again. On one CPU, nothing to place."""
        if len(self.cpus) < 2:
            return
        first, rest = {self.cpus[0]}, set(self.cpus[1:])
        if server is None:
            first = rest = set(self.cpus)
        pids = {name: proc.pid for name, proc in self.stack.procs.items() if proc.popen}
        pids["nats-server"] = self._nats_pid()
        for name, pid in pids.items():
            pin(pid, first if name == server else rest)
        os.sched_setaffinity(0, rest)  # the children this process starts inherit it

    def _http_pids(self) -> dict[str, int]:
        names = ("edge", "coordinator", "usage", "keys", "peer", "redis")
        pids = {name: self.stack.procs[name].pid for name in names}
        pids["nats-server"] = self._nats_pid()
        return pids

    # --- profiles ----------------------------------------------------------------------------

    # --- revocation and memory ---------------------------------------------------------------


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
