"""`just cluster` (aitbc_infra.cluster) as child processes of a test: the same table of
services on free ports with a data folder of the test's own, each process started, killed and
restarted on its own (aitbc-cluster's supervisor stops everything when one process dies, which
is right for a person and wrong for a fault test). What the bus says about the cluster: who
holds each usage partition, which node leads a stream, whether every replica is current and
every mirror follows its source."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import msgspec
import nats
from nats.js.errors import NotFoundError

from aitbc_contracts.ownership import LeaseMember, LeaseShare
from aitbc_contracts.subjects import (
    KEY_EVENTS_STREAM,
    USAGE_LEASES_BUCKET,
    USAGE_PARTITIONS,
    USAGE_STREAM,
)
from aitbc_infra.bus_accounts import api_prefix, mirrors
from aitbc_infra.bus_stores import ACCOUNTS, STORES
from aitbc_infra.bus_streams import ADMINS, jetstream
from aitbc_infra.cluster import NODES, PORTS, Cluster, preflight, services
from aitbc_infra.nats_server import free_port
from aitbc_infra.processes import ChildProcess
from aitbc_runtime.bus_access import BusAccess
from tests.chaos.load import wait_for
from tests.e2e.stack import TEST_SETTINGS

# Every edge fails closed: while a partition has no holder its accounts get 503, and a
# takeover over-admits only what the dead holder admitted after its last snapshot
# (docs/architecture.md, "Partitions that move"): the bound these tests assert.
SETTINGS = {**TEST_SETTINGS, "USAGE_FAIL_MODE": "closed"}
BACKENDS = ("keys-1", "keys-2", "usage-1", "usage-2")
# A mirror follows its source while its consumer's heartbeats (one a second) arrive. One whose
# consumer or source was led by a killed node stops until nats-server resets its consumer
# (aitbc_infra.bus_mirrors): about 10 s after the kill. The cluster is not whole before every
# mirror follows again.
MIRROR_SILENT_NS = 3_000_000_000


class RunningCluster:
    """The cluster of aitbc_infra.cluster.services, its processes' logs in its data folder."""

    def __init__(self, root: Path) -> None:
        ports = {name: [free_port() for _ in default] for name, default in PORTS.items()}
        env = {n: ",".join(map(str, p)) for n, p in ports.items()}
        env.update(DATA_DIR=str(root), COORDINATOR_PORT=str(free_port()))
        made = Cluster.from_env(env)
        layout = replace(made.layout, env=SETTINGS)
        self.cluster = Cluster(replace(made.config, layout=layout), made.ports)
        preflight(self.cluster)
        table = services(self.cluster)
        self.processes = {s.name: ChildProcess.of(s, layout.data_dir) for s in table}

    @property
    def layout(self):  # type: ignore[no-untyped-def]
        return self.cluster.layout

    @property
    def edges(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.cluster.ports["CLUSTER_API_PORTS"]]

    def access(self, role: str) -> BusAccess:
        return self.layout.access(role)

    def start(self) -> RunningCluster:
        for node in NODES:  # one after another: each dials the ones before it
            self.processes[node].start(timeout=90)
        self._side_by_side(BACKENDS)  # each takes a while to import
        self.processes["coordinator"].start()
        self._side_by_side(("api-1", "api-2"))
        return self

    def _side_by_side(self, names: Iterable[str]) -> None:
        for name in names:
            self.processes[name].start(wait=False)
        for name in names:
            self.processes[name].wait(90)

    def stop(self) -> None:
        for name, process in reversed(self.processes.items()):
            if name not in NODES:
                process.stop()
        for node in NODES:  # together: one left alone calls out for the others
            popen = self.processes[node].popen
            if popen is not None and popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
        for node in NODES:
            self.processes[node].stop()

    def kill(self, name: str) -> None:
        """SIGKILL: a crash, nothing flushed or handed over."""
        self.processes[name].stop(kill=True)

    def restore(self) -> list[str]:
        """Start again whatever is not running (in the order of the table); the names."""
        dead = [n for n, p in self.processes.items() if p.popen is None or p.exited()]
        for name in dead:
            self.processes[name].stop()
            self.processes[name].start(timeout=90)
        return dead

    def pid_of(self, pid: int) -> str | None:
        return next(
            (n for n, p in self.processes.items() if p.popen is not None and p.pid == pid), None
        )

    def holders(self) -> dict[int, str | None]:
        """Each usage partition's holder, as a process name (None: no live holder known)."""
        try:
            shares, members = asyncio.run(_leases(self.access("usage")))  # its bucket
        except (nats.errors.Error, TimeoutError, OSError):  # a node away: ask again
            return {}
        if len(shares) != USAGE_PARTITIONS:  # a share unread (a read timed out): ask again
            return {}
        return {
            partition: self.pid_of(members[owner]) if owner in members else None
            for partition, owner in shares.items()
        }

    def settled_holders(self, within: float = 30) -> dict[int, str | None]:
        """Every partition's holder, from a reading that saw all of them."""
        seen: dict[int, str | None] = {}

        def complete() -> bool:
            seen.clear()
            seen.update(self.holders())
            return bool(seen)

        assert wait_for(complete, within, every=0.5) is not None, "the leases were never read whole"
        return seen

    def leader(self, stream: str = KEY_EVENTS_STREAM) -> str:
        """The node that leads `stream` in its own account, as that account's admin sees."""
        return asyncio.run(_cluster_info(self.access, stream))[0]

    def lead_mirror(self, account: str, node: str, within: float = 60) -> None:
        """`account`'s mirror of the key log led by `node`, and following its source."""

        def there() -> bool:
            leader, following = asyncio.run(_mirror_state(self.access("admin"), account, node))
            return leader == node and following

        assert wait_for(there, within, every=1) is not None, f"{account}'s mirror not led by {node}"

    def mirror_follows(self, account: str) -> bool:
        """Whether `account`'s mirror of the key log follows its source (MIRROR_SILENT_NS)."""
        return asyncio.run(_mirror_state(self.access("admin"), account))[1]

    def whole(self) -> bool:
        """Every process running, both usage processes holding partitions, the key log and
        the usage stream led, with every replica current, and every mirror of them following
        its source (MIRROR_SILENT_NS)."""
        if any(p.popen is None or p.exited() for p in self.processes.values()):
            return False
        holders = self.holders()
        if len(holders) != USAGE_PARTITIONS or set(holders.values()) != {"usage-1", "usage-2"}:
            return False
        for stream in (KEY_EVENTS_STREAM, USAGE_STREAM):
            leader, current = asyncio.run(_cluster_info(self.access, stream))
            if not leader or current != len(NODES) - 1:
                return False
        return asyncio.run(_mirrors_following(self.access("admin")))

    def until_whole(self, within: float = 90) -> float:
        took = wait_for(self.whole, within, every=0.5)
        assert took is not None, f"the cluster was not whole again within {within} s"
        return took


async def _leases(access: BusAccess) -> tuple[dict[int, str | None], dict[str, int]]:
    """(partition -> its holder's member id, member id -> its pid), as the bucket has them."""
    nc = await nats.connect(**access.options())
    try:
        kv = await nc.jetstream().key_value(USAGE_LEASES_BUCKET)
        shares: dict[int, str | None] = {}
        members: dict[str, int] = {}
        for key in await kv.keys():
            try:
                entry = await kv.get(key)
            except Exception:  # deleted between the listing and the read
                continue
            if not entry.value:
                continue
            kind, _, name = key.partition(".")
            if kind == "member":
                members[name] = msgspec.json.decode(entry.value, type=LeaseMember).pid
            elif kind == "share" and name.startswith("p"):
                shares[int(name[1:])] = msgspec.json.decode(entry.value, type=LeaseShare).owner
        return shares, members
    finally:
        await nc.close()


async def _mirrors_following(admin: BusAccess) -> bool:
    """Whether every mirror in every account heard from its source within MIRROR_SILENT_NS
    (`active`: -1 while its consumer is being set up)."""
    try:
        nc = await nats.connect(**admin.options())
    except (nats.errors.Error, OSError):
        return False
    try:
        for account in ACCOUNTS:
            for stream in mirrors(account):
                try:
                    info = await jetstream(nc, account).stream_info(stream)
                except (NotFoundError, nats.errors.Error, nats.js.errors.APIError, TimeoutError):
                    return False
                active = info.mirror.active if info.mirror is not None else None
                if active is None or not 0 <= active < MIRROR_SILENT_NS:
                    return False
        return True
    finally:
        await nc.close()


async def _mirror_state(admin: BusAccess, account: str, node: str = "") -> tuple[str, bool]:
    """(who leads `account`'s mirror of the key log, whether it follows its source); with
    `node`, a step down asked for, towards it, when another node leads it."""
    try:
        nc = await nats.connect(**admin.options())
    except (nats.errors.Error, OSError):
        return "", False
    try:
        info = await jetstream(nc, account).stream_info(KEY_EVENTS_STREAM)
        leader = info.cluster.leader if info.cluster is not None else ""
        if node and leader != node:
            subject = f"{api_prefix(account)}.STREAM.LEADER.STEPDOWN.{KEY_EVENTS_STREAM}"
            await nc.request(subject, json.dumps({"placement": {"preferred": node}}).encode(), 5)
        active = info.mirror.active if info.mirror is not None else None
        return leader or "", active is not None and 0 <= active < MIRROR_SILENT_NS
    except (NotFoundError, nats.errors.Error, nats.js.errors.APIError, TimeoutError):
        return "", False
    finally:
        await nc.close()


async def _cluster_info(access: Callable[[str], BusAccess], stream: str) -> tuple[str, int]:
    """(the stream's leader, how many of its other replicas are current), in the stream's own
    account (its admin reaches it with `access(role)`); ("", 0) unknown."""
    account = STORES[stream].account
    try:
        nc = await nats.connect(**access(ADMINS[account]).options())
    except (nats.errors.Error, OSError):
        return "", 0
    try:
        try:
            info = await jetstream(nc, account).stream_info(stream)
        except (NotFoundError, nats.errors.Error, nats.js.errors.APIError, TimeoutError):
            return "", 0
        cluster = info.cluster
        if cluster is None or not cluster.leader:
            return "", 0
        current = sum(1 for peer in cluster.replicas or [] if peer.current and not peer.offline)
        return cluster.leader, current
    finally:
        await nc.close()
