"""Leases over real NATS, between real edges' rate limiters and the usage service: far from the
limit one decision serves many requests, and what is admitted stays exact across edges, whether
an edge settles its lease, or vanishes with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import nats
import pytest
from nats.aio.msg import Msg

from aitbc_contracts import ratelimit
from aitbc_contracts.subjects import USAGE_DECIDE_PREFIX, USAGE_SETTLE_PREFIX, partition_of
from aitbc_contracts.usage import DEFAULT_PLAN_LIMITS, LEASE_SECONDS
from aitbc_gate.decisions import DecisionBatcher
from aitbc_gate.limits import RateLimiter
from tests.integration.usage.conftest import System, within_one_minute

LIMIT = 1000  # the smallest limit that is lent
LIMITS = {**DEFAULT_PLAN_LIMITS, "enterprise": LIMIT}


@asynccontextmanager
async def edge(system: System, lease: int = 32, settles: bool = True) -> AsyncIterator[RateLimiter]:
    """An edge's rate limiter; one that does not settle is an edge that vanished."""
    limiter = RateLimiter(DecisionBatcher(system.edge, timeout=5), LIMITS, False, lease)
    if settles:
        limiter.start()
    try:
        yield limiter
    finally:
        await limiter.stop()


async def admitted(limiter: RateLimiter, account: str, n: int, together: bool = False) -> int:
    async def one() -> bool:
        verdict = await limiter.check(account, "key_1", "enterprise", None)
        assert verdict.decision is not None and verdict.mode == "exact"
        return verdict.decision.admitted

    if together:  # all in one turn of the loop: one batch
        return sum(await asyncio.gather(*(one() for _ in range(n))))
    return sum([await one() for _ in range(n)])


async def test_two_edges_admit_exactly_the_limit_with_a_message_per_lease(system: System) -> None:
    async def two_edges() -> tuple[list[int], list[str]]:
        account = await system.create_account("enterprise")
        messages: list[str] = []

        async def note(msg: Msg) -> None:
            messages.append(msg.subject)

        # The spies see what reaches the usage service's account, as a usage process would
        spy = await nats.connect(**system.nats.options("usage"))
        async with system.usage(plan_limits=LIMITS):
            await spy.subscribe(f"{USAGE_DECIDE_PREFIX}.*", cb=note)
            await spy.subscribe(f"{USAGE_SETTLE_PREFIX}.*", cb=note)
            await spy.flush()  # the spies are in place before the first request
            async with edge(system) as one, edge(system) as two:
                counts = await asyncio.gather(
                    admitted(one, account, 600), admitted(two, account, 600)
                )
            await spy.close()
        return counts, messages

    counts, messages = await within_one_minute(two_edges)
    assert sum(counts) == LIMIT
    # Leases of 32 for the first 900 or so; near the limit, a decision per request.
    assert 0 < len(messages) < 400, f"{len(messages)} messages for 1200 requests"


async def test_a_refusal_waits_for_another_edges_lease_and_gets_its_unused_units(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The holder settles 0.2 s after its lease (LEASE_SECONDS), from a timer of this process's
    # loop, which the burst below keeps busy: on a loaded machine the settlement could come
    # after 0.35 s, when the lease falls due and counts as used. The usage service runs in this
    # process, so its lease's due time is widened here; the rule under test is unchanged: a
    # refusal waits for the lease, and the units it did not use are admitted.
    monkeypatch.setattr(ratelimit, "LEASE_DUE_SECONDS", 3.0)

    async def lent_then_settled() -> tuple[int, int, int, int]:
        account = await system.create_account("enterprise")
        async with (
            system.usage(plan_limits=LIMITS) as usage,
            edge(system) as holder,
            edge(system, lease=0) as other,
        ):
            first = await admitted(holder, account, 1)  # and 32 lent to it
            windows = usage.deciding.windows
            lent = sum(w.leased.get(account, 0) for w in windows.values())
            # The other edge's burst reaches the limit while the 32 are still lent: the
            # refusals wait until the holder settles, then the 32 are admitted too.
            burst = await admitted(other, account, 1100, together=True)
            return first, lent, burst, await admitted(holder, account, 5)

    assert await within_one_minute(lent_then_settled) == (1, 32, LIMIT - 1, 0)


async def test_a_lease_of_an_edge_that_vanished_counts_as_used_once_due(system: System) -> None:
    async def vanished() -> tuple[int, int]:
        account = await system.create_account("enterprise")
        async with (
            system.usage(plan_limits=LIMITS),
            edge(system, settles=False) as gone,
            edge(system, lease=0) as other,
        ):
            # Its 32 lent units are never settled: once due, they count as used.
            return await admitted(gone, account, 1), await admitted(other, account, 1100, True)

    assert await within_one_minute(vanished) == (1, LIMIT - 33)


async def test_a_lease_settled_while_its_partition_is_paused_still_comes_back(
    system: System,
) -> None:
    """A lapsed heartbeat pauses the partition (no decisions) without losing it: settlements
    that arrive meanwhile still give their units back, or they would count as used."""

    async def settled_in_a_pause() -> tuple[int, int]:
        account = await system.create_account("enterprise")
        partition = partition_of(account)
        async with system.usage(plan_limits=LIMITS) as usage, edge(system) as holder:
            await admitted(holder, account, 1)  # and 32 lent to it
            window = usage.deciding.windows[partition]
            lent = window.leased[account]
            serves = usage.deciding.serves
            usage.deciding.serves = lambda p: p != partition  # what a lapse looks like
            try:
                async with asyncio.timeout(5):  # the holder settles 0.2 s after its lease
                    while account in window.leased:
                        await asyncio.sleep(0.02)
            finally:
                usage.deciding.serves = serves
            return lent, window.accounts[account]

    assert await within_one_minute(settled_in_a_pause) == (32, 1)


async def test_a_lease_lent_before_a_handover_is_settled_with_the_next_holder(
    system: System,
) -> None:
    async def handed_over() -> tuple[int, int]:
        account = await system.create_account("enterprise")
        partition = partition_of(account)
        async with AsyncExitStack() as second, edge(system, settles=False) as holder:
            async with system.usage(plan_limits=LIMITS, lease_seconds=0.6) as first:
                await admitted(holder, account, 1)  # and 32 lent to it, by the first
                lent = first.deciding.windows[partition].leased[account]
                after = await second.enter_async_context(
                    system.usage(plan_limits=LIMITS, lease_seconds=0.6)
                )
            async with asyncio.timeout(10):  # the first left: its partitions move over
                while partition not in after.deciding.windows:
                    await asyncio.sleep(0.02)
            holder.start()
            await holder.stop()  # settles every lease: none of the 32 was used
            window = after.deciding.windows[partition]
            async with asyncio.timeout(5):
                while account in window.leased:
                    await asyncio.sleep(0.02)
            return lent, window.accounts[account]

    assert await within_one_minute(handed_over) == (32, 1)


async def test_a_settlement_carried_by_a_decision_no_holder_took_is_sent_on_its_own(
    system: System,
) -> None:
    async def paused_decision() -> tuple[str, int, dict[str, int]]:
        account = await system.create_account("enterprise")
        partition = partition_of(account)
        async with system.usage(plan_limits=LIMITS) as usage, edge(system, settles=False) as e:
            await admitted(e, account, 1)  # and 32 lent to it
            await asyncio.sleep(LEASE_SECONDS * 1.5)  # its lease is over, not yet settled
            window = usage.deciding.windows[partition]
            serves = usage.deciding.serves
            usage.deciding.serves = lambda p: p != partition  # a lapse: PARTITION_MOVED
            try:
                # The next request's decision carries the lease's settlement; no holder takes
                # it, so the request gets the fail policy, and the settlement goes on its own.
                verdict = await e.check(account, "key_1", "enterprise", None)
                async with asyncio.timeout(5):
                    while account in window.leased:
                        await asyncio.sleep(0.02)
            finally:
                usage.deciding.serves = serves
            return verdict.mode, window.accounts[account], window.leased

    assert await within_one_minute(paused_decision) == ("fail-closed", 1, {})
