"""Shares held by leases on a real nats-server, with the usage role's credentials: exactly one
holder at a time, epochs that only grow, handovers on join and leave, takeover after a death."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import NoStreamResponseError
from nats.js.kv import KeyValue

from aitbc_contracts.subjects import USAGE_LEASES_BUCKET
from aitbc_infra.nats_server import NatsServer
from aitbc_runtime.lease_view import rendezvous
from aitbc_runtime.ownership import Ownership, lease_bucket

NAMES = [f"p{n}" for n in range(16)]
TTL = 0.6


class Holder:
    """One member and what it serves, as its callbacks tell it."""

    def __init__(
        self,
        nc: NATS,
        log: list[tuple[str, str, str]],
        ttl: float = TTL,
        names: list[str] = NAMES,
    ) -> None:
        self.serving: dict[str, int] = {}
        self.log = log
        self.ownership = Ownership(nc, USAGE_LEASES_BUCKET, names, self.gained, self.lost, ttl=ttl)
        self.id = self.ownership.member

    async def gained(self, name: str, epoch: int) -> None:
        self.serving[name] = epoch
        self.log.append(("gained", name, self.id))

    async def lost(self, name: str, handed_over: bool) -> None:
        self.serving.pop(name, None)  # not there when it could not start serving it
        self.log.append(("lost", name, self.id))


@asynccontextmanager
async def member(
    server: NatsServer, log: list[tuple[str, str, str]], names: list[str] = NAMES
) -> AsyncIterator[Holder]:
    nc = await nats.connect(**server.options("usage"))
    holder = Holder(nc, log, names=names)
    await holder.ownership.start()
    try:
        yield holder
    finally:
        await holder.ownership.stop()
        await nc.close()


async def until(condition: Callable[[], bool], within: float = 10) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.02)


def settled(homes: dict[str, str], *holders: Holder) -> bool:
    """Each holder serves what rendezvous hashing gives it, and nothing else."""
    return all(
        sorted(holder.serving)
        == sorted(n for n, m in homes.items() if m == holder.ownership.member)
        for holder in holders
    )


def disjoint_and_whole(*holders: Holder) -> bool:
    names = [name for holder in holders for name in holder.serving]
    return sorted(names) == sorted(NAMES)


async def test_one_member_takes_every_share_with_growing_epochs(own_nats: NatsServer) -> None:
    log: list[tuple[str, str, str]] = []
    async with member(own_nats, log) as one:
        await until(lambda: disjoint_and_whole(one))
        assert all(one.ownership.holds(name) for name in NAMES)
        epochs = list(one.serving.values())
        assert len(set(epochs)) == len(epochs)


async def test_a_second_member_gets_its_shares_and_every_share_has_one_holder(
    own_nats: NatsServer,
) -> None:
    log: list[tuple[str, str, str]] = []
    async with member(own_nats, log) as one:
        await until(lambda: disjoint_and_whole(one))
        before = dict(one.serving)
        async with member(own_nats, log) as two:
            members = [one.ownership.member, two.ownership.member]
            homes = {name: rendezvous(name, members) for name in NAMES}
            await until(lambda: disjoint_and_whole(one, two) and settled(homes, one, two))
            for name, epoch in two.serving.items():
                assert epoch > before[name], "a new holder's epoch is above its predecessor's"
            moved = set(two.serving)
        # The second leaves: its shares come back, handed over at once.
        await until(lambda: disjoint_and_whole(one))
    # Never two holders at once: each share's gains and losses alternate across members.
    for name in moved:
        events = [(event, holder) for event, share, holder in log if share == name]
        gains, losses = events[::2], events[1::2]
        assert [e for e, _ in gains] == ["gained"] * len(gains), events
        assert [e for e, _ in losses] == ["lost"] * len(losses), events
        assert [h for _, h in gains] == [h for _, h in losses], events


async def test_a_dead_members_shares_are_taken_after_its_lease_and_it_stopped_first(
    own_nats: NatsServer,
) -> None:
    log: list[tuple[str, str, str]] = []
    async with member(own_nats, log) as one:
        await until(lambda: disjoint_and_whole(one))
        nc = await nats.connect(**own_nats.options("usage"))
        two = Holder(nc, log)
        await two.ownership.start()
        members = [one.ownership.member, two.ownership.member]
        homes = {name: rendezvous(name, members) for name in NAMES}
        await until(lambda: bool(two.serving) and settled(homes, one, two))
        theirs = set(two.serving)
        # Whenever the survivor takes one of them over, the dead one no longer serves it.
        overlaps: list[str] = []
        gained = one.ownership._gained

        async def checked(name: str, epoch: int) -> None:
            if two.ownership.holds(name):
                overlaps.append(name)
            await gained(name, epoch)

        one.ownership._gained = checked
        # Its connection dies without a goodbye: it can neither beat nor hand over.
        await nc.close()
        died = time.monotonic()
        await until(lambda: disjoint_and_whole(one), within=5 * TTL + 5)
        taken = time.monotonic() - died
        assert set(one.serving) >= theirs and not overlaps, "two holders at once"
        # Paused, not lost: it cannot tell whether they are still its own.
        assert not any(two.ownership.holds(name) for name in theirs)
        print(f"takeover {taken:.2f}s with a ttl of {TTL}s")
        await two.ownership.stop()


async def test_a_member_key_left_by_a_killed_process_is_given_no_share(
    own_nats: NatsServer,
) -> None:
    """A process killed leaves its heartbeat key behind; one that joins afterwards must not
    place shares on it, or those would wait a whole lease for a holder (the lease is long
    here: that wait would outlast the test)."""
    nc = await nats.connect(**own_nats.options("usage"))
    bucket = await lease_bucket(nc, USAGE_LEASES_BUCKET, 1)
    await bucket.put("member.killed0123456789", b'{"host": "gone", "pid": 1}')
    log: list[tuple[str, str, str]] = []
    slow = Holder(nc, log, ttl=60)
    await slow.ownership.start()
    try:
        await until(lambda: disjoint_and_whole(slow))  # every share, the killed one's too
    finally:
        await slow.ownership.stop()
        await nc.close()


async def test_shares_go_only_to_members_that_may_hold_them_and_stay_there(
    own_nats: NatsServer,
) -> None:
    log: list[tuple[str, str, str]] = []
    few = NAMES[:4]
    async with member(own_nats, log, names=few) as narrow, member(own_nats, log) as wide:
        members = [narrow.ownership.member, wide.ownership.member]
        homes = {name: rendezvous(name, members if name in few else members[1:]) for name in NAMES}
        await until(lambda: disjoint_and_whole(narrow, wide) and settled(homes, narrow, wide))
        assert set(narrow.serving) <= set(few)
        moves = len(log)
        await asyncio.sleep(3 * TTL)  # a few leases: nothing moves back and forth
        assert len(log) == moves, log[moves:]


async def test_a_share_it_cannot_serve_is_handed_back_and_taken_again(
    own_nats: NatsServer,
) -> None:
    log: list[tuple[str, str, str]] = []
    nc = await nats.connect(**own_nats.options("usage"))
    holder = Holder(nc, log)
    failures = ["p0"]
    served = holder.gained

    async def gained(name: str, epoch: int) -> None:
        if name in failures:
            failures.remove(name)
            raise OSError("the snapshot could not be read")
        await served(name, epoch)

    holder.ownership._gained = gained
    await holder.ownership.start()
    try:
        await until(lambda: disjoint_and_whole(holder))
        assert not failures
        # Told to stop what it could not start (to clean up), then given it again.
        assert [event for event, name, _ in log if name == "p0"] == ["lost", "gained"]
        assert holder.ownership.holds("p0")
    finally:
        await holder.ownership.stop()
        await nc.close()


async def test_a_first_heartbeat_without_an_answer_is_tried_again(
    own_nats: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket just made at 3 replicas has no leader for a moment: `just cluster`'s usage
    processes died at start on "no response from stream". Here the first heartbeat is stored
    but its answer lost; the member joins anyway and takes every share."""
    update = KeyValue.update
    calls = 0

    async def answer_lost(self: KeyValue, key: str, value: bytes, last: int | None = None) -> int:
        nonlocal calls
        calls += 1
        revision = await update(self, key, value, last=last)
        if calls == 1:
            raise NoStreamResponseError
        return revision

    monkeypatch.setattr(KeyValue, "update", answer_lost)
    log: list[tuple[str, str, str]] = []
    async with member(own_nats, log) as one:
        await until(lambda: disjoint_and_whole(one))
    assert calls > 1


async def test_a_lapse_nobody_took_advantage_of_is_a_pause(own_nats: NatsServer) -> None:
    """Heartbeats late for a moment (a busy machine): the holder stops serving at once, and
    serves the same shares again, with the same epochs and nothing lost, once a heartbeat is
    answered and the shares' keys are still its own."""
    log: list[tuple[str, str, str]] = []
    async with member(own_nats, log) as one:
        await until(lambda: disjoint_and_whole(one))
        epochs = dict(one.serving)
        beat = one.ownership.heartbeat.beat
        late = True

        async def late_beat() -> None:
            if late:
                raise TimeoutError("no answer")
            await beat()

        one.ownership.heartbeat.beat = late_beat  # type: ignore[method-assign]
        await until(lambda: not one.ownership.holds("p0"))
        late = False
        await until(lambda: all(one.ownership.holds(name) for name in NAMES))
        assert one.serving == epochs
        assert [event for event, _, _ in log] == ["gained"] * len(NAMES)
