"""Leases in the edge's rate limiter, against a usage service in process: requests share a lease
being asked for, a ready lease admits without an await, renewals keep a steady flow exact, and a
stopping edge settles what it holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from aitbc_contracts.ratelimit import MinuteWindow
from aitbc_contracts.subjects import partition_of, usage_settle_subject
from aitbc_contracts.usage import Decide, Decision, Settle, Settlements
from aitbc_gate.decisions import DecisionBatcher
from aitbc_gate.limits import RateLimiter
from tests.unit.lease_window import RESET, T0


def at(now: float) -> Callable[[], float]:
    """A clock that stays at `now`: a loaded machine cannot make a lease run out mid-test."""
    return lambda: now


async def test_requests_arriving_while_a_lease_is_asked_for_take_from_it() -> None:
    asked: list[Decide] = []

    class SlowUsage:
        async def decide(self, item: Decide) -> Decision:
            asked.append(item)
            await asyncio.sleep(0.01)
            return Decision(True, 6000, 5999, RESET, lease=item.lease)

    batcher: DecisionBatcher = SlowUsage()  # type: ignore[assignment]
    limiter = RateLimiter(
        batcher, {"enterprise": 6000}, fail_open=True, lease_units=32, clock=at(T0 + 1)
    )
    verdicts = await asyncio.gather(
        *(limiter.check("acc_1", "key_1", "enterprise", None) for _ in range(10))
    )
    assert [item.lease for item in asked] == [32]  # one asked; nine waited for its lease
    remaining = sorted(v.decision.remaining for v in verdicts if v.decision and v.decision.admitted)
    assert remaining == list(range(5990, 6000))


async def test_a_ready_lease_admits_without_an_await_and_none_sends_to_a_decision() -> None:
    class Usage:
        async def decide(self, item: Decide) -> Decision:
            return Decision(True, 6000, 5999, RESET, lease=item.lease)

    batcher: DecisionBatcher = Usage()  # type: ignore[assignment]
    limiter = RateLimiter(
        batcher, {"enterprise": 6000}, fail_open=True, lease_units=32, clock=at(T0 + 1)
    )
    assert limiter.leased("acc_1", "key_1", "enterprise", None) is None  # no lease yet
    first = await limiter.decide("acc_1", "key_1", "enterprise", None)
    assert first.decision is not None and first.decision.lease == 32
    leased = limiter.leased("acc_1", "key_1", "enterprise", None)
    assert leased is not None and leased.mode == "exact" and leased.policy == "enterprise"
    assert leased.decision is not None and leased.decision.remaining == 5998
    assert limiter.leased("acc_1", "key_1", "enterprise", 100) is None  # a key's own limit


async def test_an_edge_that_stops_settles_every_lease_it_holds() -> None:
    published: list[tuple[str, bytes]] = []

    class Bus:
        async def publish(self, subject: str, payload: bytes) -> None:
            published.append((subject, payload))

    class Usage:
        nc = Bus()

        async def decide(self, item: Decide) -> Decision:
            return Decision(True, 6000, 5999, RESET, lease=item.lease)

    batcher: DecisionBatcher = Usage()  # type: ignore[assignment]
    limiter = RateLimiter(
        batcher, {"enterprise": 6000}, fail_open=True, lease_units=32, clock=at(T0 + 1)
    )
    limiter.start()
    await limiter.check("acc_1", "key_1", "enterprise", None)
    await limiter.check("acc_1", "key_1", "enterprise", None)  # one of the 32 used
    await limiter.stop()
    assert published == [
        (
            usage_settle_subject(partition_of("acc_1")),
            msgspec.json.encode(Settlements([Settle("acc_1", 32, 31, RESET)])),
        )
    ]


async def test_a_steady_flow_is_admitted_from_renewed_leases_counting_down_exactly() -> None:
    now = T0 + 1
    window = MinuteWindow()  # the usage service's own rule, in process
    items: list[Decide] = []

    class Usage:
        async def decide(self, item: Decide) -> Decision:
            items.append(item)
            return window.decide(
                item.account_id, item.key_id, 6000, None, now, item.lease, item.renew
            )

    batcher: DecisionBatcher = Usage()  # type: ignore[assignment]
    limiter = RateLimiter(
        batcher, {"enterprise": 6000}, fail_open=True, lease_units=32, clock=lambda: now
    )
    remaining = []
    for _ in range(500):  # one every half millisecond: leases run out in time as in units
        verdict = await limiter.check("acc_1", "key_1", "enterprise", None)
        assert verdict.decision is not None and verdict.decision.reset == RESET
        remaining.append(verdict.decision.remaining)
        await asyncio.sleep(0)  # a turn of the loop, as between requests
        now += 0.0005
    assert remaining == list(range(5999, 5499, -1))
    assert [item.renew for item in items].count(False) == 1  # asked once, then renewed
    assert len(items) < 25
