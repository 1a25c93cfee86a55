"""Two keys services as processes on one PostgreSQL database, under load through the edge; the
one running the outbox relay is killed (SIGKILL). Key checks and commands keep succeeding (a
client may retry within its own timeout: only what was in flight to the dead process is
answered 503), the relay moves to the survivor within about a lease, and the key event stream
ends up holding every stored event once, in order.

Each round of the load is a client's: create a key, use it (the edge has never seen it, so the
keys service checks it), revoke it, and use it: it is refused at once, whichever keys process
answers the check."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import msgspec
import nats
import pytest
from nats.js.errors import NoKeysError

from aitbc_contracts.ownership import LeaseMember, LeaseShare
from aitbc_contracts.subjects import KEYS_LEASES_BUCKET
from aitbc_infra import stack as definition
from aitbc_infra.processes import ChildProcess
from aitbc_runtime.bus_access import BusAccess
from aitbc_runtime.lease_view import rendezvous
from aitbc_runtime.scratch_database import ScratchDatabase
from tests.chaos.keylog import check_key_log
from tests.e2e.stack import Stack

pytestmark = pytest.mark.postgres

LEASE = "1"  # KEYS_LEASE_SECONDS: a dead holder's relay moves after about this
RETRY_FOR = 10.0  # seconds a client keeps retrying one step (the edge's KEYS_TIMEOUT is 2)
WORKERS = 2


@pytest.fixture
def two_keys(tmp_path: Path, postgres_server_url: str) -> Iterator[Stack]:
    """The whole system with a second keys process (`keys-2`), both on a new PostgreSQL
    database; limits far above what the load asks."""
    database = ScratchDatabase(postgres_server_url, "aitbc_test")
    asyncio.run(database.create())
    settings = {"KEYS_LEASE_SECONDS": LEASE, "PLAN_LIMITS": "free=1000000,pro=1000000"}
    system = Stack(tmp_path, database_url=database.url, extra_env=settings)
    try:
        system.start_bus()
        second = definition.another(definition.service(system.layout, "keys"), "keys-2", 0)
        system.processes["keys-2"] = ChildProcess.of(second, tmp_path).start()
        system.add_service("coordinator").start()
        system.add_service("api").start()
        yield system
    finally:
        system.stop()
        asyncio.run(database.drop())


@dataclass(frozen=True)
class Lease:
    holder: int | None  # the pid of the relay's holder
    members: dict[str, int]  # member id -> pid, for every member key in the bucket


async def _lease(access: BusAccess) -> Lease:
    nc = await nats.connect(**access.options())
    try:
        kv = await nc.jetstream().key_value(KEYS_LEASES_BUCKET)
        members: dict[str, int] = {}
        try:
            names = await kv.keys()
        except NoKeysError:  # nats-py's watcher can read a bucket as empty for a moment
            names = []
        for key in names:
            if key.startswith("member."):
                entry = await kv.get(key)
                members[key.removeprefix("member.")] = msgspec.json.decode(
                    entry.value or b"", type=LeaseMember
                ).pid
        try:
            share = msgspec.json.decode((await kv.get("share.relay")).value or b"", type=LeaseShare)
        except Exception:  # free: deleted, never taken
            return Lease(None, members)
        return Lease(members.get(share.owner), members)
    finally:
        await nc.close()


def lease(system: Stack) -> Lease:
    return asyncio.run(_lease(system.layout.access("keys")))  # its account's bucket


def holder_of(system: Stack, pids: dict[str, int]) -> str:
    """The name of the keys process that holds the relay, as the lease bucket says."""
    found: list[str] = []

    def read() -> bool:
        holder = lease(system).holder
        found[:] = [name for name, pid in pids.items() if pid == holder]
        return bool(found)

    eventually(read, "the relay's holder in the lease bucket")
    return found[0]


def eventually(check: Callable[[], bool], what: str, within: float = 30, *more: object) -> float:
    """Seconds until `check()` held (`more`: what to show if it never does)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"not within {within} s: {what} {more}"
        time.sleep(0.05)
    return time.monotonic() - started


@dataclass
class Load:
    """Client threads' rounds; what each step was answered, and the steps that never passed."""

    url: str
    master: str = field(repr=False)  # a key: never in an assertion's message
    stop: threading.Event = field(default_factory=threading.Event)
    rounds: int = 0
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)  # (step, status)
    failed: Counter[str] = field(default_factory=Counter)  # steps that never passed
    stale: int = 0  # rounds whose revoked key was still admitted at first
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def step(
        self, name: str, call: Callable[[], httpx.Response], wanted: int
    ) -> tuple[httpx.Response, list[int]]:
        """`call()` until it answers `wanted`, for up to RETRY_FOR seconds: that answer, and
        the statuses answered before it (0: no answer)."""
        deadline = time.monotonic() + RETRY_FOR
        others: list[int] = []
        while True:
            try:
                response = call()
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            with self._lock:
                self.answers[name, status] += 1
            if status == wanted:
                return response, others
            others.append(status)
            if time.monotonic() > deadline:
                with self._lock:
                    self.failed[name] += 1
                raise AssertionError(f"{name} never answered {wanted}")
            time.sleep(0.05)

    def client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=RETRY_FOR) as api:
            while not self.stop.is_set():
                try:
                    admitted = self.one_round(api)
                except AssertionError:
                    continue
                with self._lock:
                    self.rounds += 1
                    self.stale += admitted > 0

    def one_round(self, api: httpx.Client) -> int:
        """A key made, used, revoked, refused; returns how often it was admitted once revoked
        (a 503 while the check went to the killed process is no admission)."""
        owner = {"X-API-Key": self.master}
        made, _ = self.step(
            "create", partial(api.post, "/v1/api-keys", json={"name": "load"}, headers=owner), 201
        )
        key_id, uses = made.json()["key_id"], {"X-API-Key": made.json()["key"]}
        self.step("check", partial(api.get, "/v1/jobs", headers=uses), 200)
        self.step("revoke", partial(api.delete, f"/v1/api-keys/{key_id}", headers=owner), 200)
        before = self.step("refused", partial(api.get, "/v1/jobs", headers=uses), 401)[1]
        return before.count(200)

    def run(self, workers: int) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.client, daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()
        return threads

    def failures(self) -> dict[tuple[str, int], int]:
        return {k: n for k, n in self.answers.items() if k[1] not in (200, 201, 401)}


def test_killing_the_relays_keys_process_under_load(two_keys: Stack) -> None:
    system = two_keys
    pids = {name: system.processes[name].pid for name in ("keys", "keys-2")}
    # Both joined, and the relay is where it stays while both live.
    eventually(
        lambda: (
            set(pids.values()) <= set((now := lease(system)).members.values())
            and now.holder == now.members[rendezvous("relay", list(live_members(now, pids)))]
        ),
        "both keys processes in the lease, the relay with its member",
    )
    holder = holder_of(system, pids)
    survivor = next(name for name in pids if name != holder)

    with httpx.Client(base_url=system.api_url, timeout=10) as api:
        master = api.post("/v1/accounts").json()["master_key"]["key"]
    load = Load(system.api_url, master)
    threads = load.run(WORKERS)
    eventually(lambda: load.rounds >= 10, "rounds before the kill", 30, load.answers)
    before = load.rounds

    system.processes[holder].stop(kill=True)
    moved = eventually(lambda: lease(system).holder == pids[survivor], "the relay moved")
    eventually(lambda: load.rounds >= before + 20, "rounds after", 30, load.answers)
    load.stop.set()
    for thread in threads:
        thread.join(timeout=2 * RETRY_FOR + 5)

    log = check_key_log(system.database_url, system.layout.access("auditor"))
    print(
        f"relay moved {moved:.2f} s after the kill; rounds {load.rounds}; answers "
        f"{dict(load.answers)}; revoked keys admitted at first in {load.stale} rounds"
    )
    assert not load.failed, f"steps that failed even when retried: {dict(load.failed)}"
    # Only requests in flight to the killed process fail (503 after the edge's KEYS_TIMEOUT),
    # one step per client thread at most, and a retry passes.
    assert sum(load.failures().values()) <= 2 * WORKERS, load.failures()
    assert set(load.failures()) <= {(s, 503) for s in ("create", "check", "revoke", "refused")}
    assert (log.lost, log.duplicated, log.in_order, log.same_bytes) == (0, 0, True, True)
    # A revoked key is refused at once, though the next check may reach the keys process that
    # did not revoke it: that one was told, before the stream could tell it.
    assert load.stale == 0


def live_members(now: Lease, pids: dict[str, int]) -> list[str]:
    """The member ids of the processes `pids` (a killed run's members may linger in the
    bucket until they are forgotten)."""
    return [member for member, pid in now.members.items() if pid in pids.values()]
