"""The state of one benchmark run, which every phase reads and writes: the configuration, the
stack under test, the seeded accounts, the HTTP targets and the results. The phases are in
bench/bus_phases.py, bench/http_phases.py and bench/edge_phases.py; bench/run.py runs them.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import nats

from aitbc_contracts import messages as m
from aitbc_contracts.identity import (
    ACCOUNT_HEADER,
    IDENTITY_HEADER,
    KEY_HEADER,
    REQUEST_ID_HEADER,
    UpstreamIdentity,
)
from aitbc_contracts.keyformat import hash_key
from aitbc_contracts.subjects import KEY_EVENTS_STREAM, KEYS_CHECK, KEYS_READ_COMMANDS
from aitbc_infra.bus_stores import USAGE_ACCOUNT
from aitbc_infra.bus_streams import jetstream as account_jetstream
from bench import http_load
from bench.common import say
from bench.config import PLAN_LIMITS, PLANS, WINDOWED_ACCOUNTS, Config
from bench.cpu import pin
from bench.keys_database import KeysDatabase
from bench.peer_app import create_database
from bench.seed import Seeded, seed
from bench.stack import Stack, until_serving

# The second sample Coordinator, with the gate in process: scenario E's server.
GATED = "coordinator-gated"
WORKERS_EDGE = "edge-workers"  # C2: the full path through an edge of API_WORKERS=2

# What the direct scenario sends the Coordinator: the identity headers the edge sends.
DIRECT_HEADERS = f"{ACCOUNT_HEADER},{KEY_HEADER},{REQUEST_ID_HEADER},{IDENTITY_HEADER}"


def signed_identity(stack: Stack, account_id: str, number: int) -> str:
    """One line of the direct scenario's file: an identity signed as the edge signs one, now
    (the benchmark's Coordinator believes it for the whole run: IDENTITY_MAX_AGE)."""
    identity = UpstreamIdentity(stack.layout.identity_secret_file.read_text())
    key_id, request_id = "key_bench", f"bench-{number}"
    signed = identity.sign(account_id, key_id, request_id, time.time())
    return "\t".join((account_id, key_id, request_id, signed)) + "\n"


class Bench:
    def __init__(self, config: Config, root: Path) -> None:
        self.config = config
        self.root = root
        self.keys_database = KeysDatabase(root)  # SQLite, or PostgreSQL (BENCH_POSTGRES_URL)
        self.stack = Stack(root, PLAN_LIMITS, plans=PLANS, database_url=self.keys_database.url)
        self.results: dict[str, Any] = {
            "config": asdict(config),
            "keys_database": self.keys_database.kind,
        }
        self.commands: list[str] = []
        self.seeded: Seeded | None = None
        self.cpus = sorted(os.sched_getaffinity(0))

    def bus(self, role: str = "admin") -> Any:
        """The benchmark's own connection, as admin: it sends on the bare responder's subjects
        (which no role has) as well as the services', so that both are measured alike, and it
        asks for accounts as an operator would. (As `role`: what only a role's own account
        holds, the usage leases' bucket for one.)"""
        options = self.stack.nats.options(role)

        class _Bus:
            async def __aenter__(self) -> nats.NATS:
                self.nc = await nats.connect(**options, name="bench")
                return self.nc

            async def __aexit__(self, *_: object) -> None:
                await self.nc.close()

        return _Bus()

    async def start_and_seed(self, http_side: bool = True) -> None:
        """The keys database seeded, then nats-server, usage and keys started; and unless
        `http_side` is False (`--only` phases on the bus), the HTTP side spawned meanwhile."""
        c = self.config
        say(f"seeding {c.bulk:,} accounts + {c.load_accounts}x{c.keys_per_account} keys ...")
        t = time.perf_counter()
        await self.keys_database.create()
        self.seeded = await seed(
            self.keys_database.url,
            c.bulk,
            c.load_accounts,
            c.keys_per_account,
            c.revocations,
            windowed=WINDOWED_ACCOUNTS,
        )
        seeding = time.perf_counter() - t
        stack = self.stack
        # Its start makes the key log and the mirror usage follows (aitbc_infra.bus_streams):
        # they exist before usage starts, so usage follows them from the first event.
        stack.nats.start()
        usage = stack.start_service("usage", wait=False)
        if http_side:
            self.spawn_http_side()  # they import while the relay works
        else:  # the bus phases measure against it too
            self.null = stack.start_null_responder("null")
        await until_serving(usage)
        await asyncio.sleep(1.0)
        self.usage_rss = [usage.rss_kib()]  # knows no account yet
        keys = stack.start_service("keys", wait=False)
        t = time.perf_counter()
        await until_serving(keys)
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
        """Until the usage service's mirror of the stream holds every event and every follower
        there has read them all (through the admin's import of that account's API)."""
        js = account_jetstream(nc, USAGE_ACCOUNT)
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
        samples += self.seeded.load_keys()[::50] + self.seeded.restricted_keys()[::50]
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
                        KEYS_READ_COMMANDS, m.encoder.encode(m.GetAccount(account_id=account_id))
                    )
                ).data
            )
            if not isinstance(view, m.AccountView) or view.plan != "enterprise":
                raise RuntimeError(f"seeded account not known to the keys service: {view!r}")

    def spawn_http_side(self) -> None:
        """The HTTP side, started side by side without waiting: upstream, the gated Coordinator
        (E), three edges (the second for revocation, the third for memory: both serve nothing
        until then), redis, the peer and the bare responder."""
        assert self.seeded is not None
        stack = self.stack
        self.spawned = [stack.start_service("coordinator", wait=False)]
        self.spawned += [stack.start_gated_coordinator(GATED, wait=False)]
        self.spawned += [stack.start_edge(n, wait=False) for n in ("edge", "edge2", "edge-memory")]
        self.spawned += [stack.start_edge(WORKERS_EDGE, wait=False, API_WORKERS="2")]
        redis = stack.start_redis(wait=False)
        peer_db = self.root / "peer.db"
        create_database(
            str(peer_db),
            ((hash_key(key), account, "enterprise") for account, key in self.seeded.load_keys()),
        )
        self.spawned += [redis, stack.start_peer(redis, peer_db, wait=False)]
        nginx = stack.start_nginx(self.seeded.load_keys(), wait=False)
        self.spawned += [nginx] if nginx is not None else []
        self.null = stack.start_null_responder("null")

    def start_http_side(self) -> None:
        stack = self.stack
        for proc in self.spawned:
            proc.wait()
        self.edge, self.peer = stack.procs["edge"], stack.procs["peer"]
        self.gated = stack.procs[GATED]
        keys_file = self._keys_file("keys.txt", self.seeded.load_keys())
        restricted_file = self._keys_file("restricted-keys.txt", self.seeded.restricted_keys())
        identities = self.root / "identities.txt"
        identities.write_text(
            "".join(signed_identity(stack, a.account_id, i) for i, a in enumerate(self.seeded.load))
        )
        upstream = stack.upstream_url
        # N's requests: each key with its account's signed identity (bench/nginx.py)
        lines = identities.read_text().splitlines()
        by_account = {a.account_id: line for a, line in zip(self.seeded.load, lines, strict=True)}
        with_identities = self.root / "keys-and-identities.txt"
        with_identities.write_text(
            "".join(f"{key}\t{by_account[account]}\n" for account, key in self.seeded.load_keys())
        )
        # In the order of a round: E right after A, the two that E/A pairs; R right after C
        self.targets = {
            "A": http_load.Target("A direct", upstream + "/v1/jobs", DIRECT_HEADERS, identities),
            "E": http_load.Target("E gated Coordinator", self.gated.url + "/v1/jobs",
                                  "X-API-Key", keys_file),
            "B": http_load.Target("B edge, public", self.edge.url + "/v1/health"),
            "C": http_load.Target("C edge, full", self.edge.url + "/v1/jobs", "X-API-Key",
                              keys_file),
            "C2": http_load.Target("C2 edge, full, 2 workers",
                                   stack.procs[WORKERS_EDGE].url + "/v1/jobs", "X-API-Key",
                                   keys_file),
            "R": http_load.Target("R edge, restricted keys", self.edge.url + "/v1/jobs",
                                  "X-API-Key", restricted_file),
            "D": http_load.Target("D peer", self.peer.url + "/v1/jobs", "X-API-Key", keys_file),
        }  # fmt: skip
        if (nginx := stack.procs.get("nginx")) is not None:
            self.targets["N"] = http_load.Target(
                "N nginx", nginx.url + "/v1/jobs", "X-API-Key," + DIRECT_HEADERS, with_identities
            )

    def _keys_file(self, name: str, keys: list[tuple[str, str]]) -> Path:
        """The keys, one a line, shuffled: the load generators walk the file in order, and
        grouped by account, each account would get all its keys' requests in a row, then none
        for the rest of the pass (independent clients' requests interleave)."""
        values = [key for _, key in keys]
        random.Random(5).shuffle(values)
        path = self.root / name
        path.write_text("\n".join(values) + "\n")
        return path

    def _nats_pid(self) -> int:
        assert self.stack.nats.process is not None
        return self.stack.nats.process.pid

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
        names = ("edge", WORKERS_EDGE, "coordinator", GATED, "usage", "keys", "peer", "redis",
                 "nginx")  # fmt: skip
        pids = {name: self.stack.procs[name].pid for name in names if name in self.stack.procs}
        pids["nats-server"] = self._nats_pid()
        return pids
