"""Leases, as pure logic: what the counting authority lends and takes back (MinuteWindow), and
what an edge admits from them (LeaseBook). Over real NATS: tests/integration/usage/test_leases.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest

from aitbc_api.pipeline.leases import GROWTH, LeaseBook
from aitbc_api.pipeline.limits import DecisionBatcher, RateLimiter
from aitbc_contracts.ratelimit import MinuteWindow, lease_size
from aitbc_contracts.subjects import USAGE_PARTITIONS, partition_of, usage_settle_subject
from aitbc_contracts.usage import (
    LEASE_DUE_SECONDS,
    LEASE_MIN_LIMIT,
    LEASE_SECONDS,
    Decide,
    DecideBatch,
    Decision,
    Settle,
    Settlements,
    decision_batch_decoder,
)
from aitbc_usage.handlers import Deciding
from aitbc_usage.plans import PlanBook

T0 = 1_800_000_000.0  # a minute boundary
RESET = int(T0) + 60
LIMIT = 1000


def test_small_limits_are_never_lent() -> None:
    assert lease_size(LEASE_MIN_LIMIT - 1, LEASE_MIN_LIMIT - 2, 32) == 0
    assert lease_size(LEASE_MIN_LIMIT, LEASE_MIN_LIMIT - 1, 32) == 32


def test_leases_shrink_near_the_limit_and_stop_above_a_tenth_of_it() -> None:
    assert lease_size(1000, 999, 32) == 32
    assert lease_size(1000, 140, 32) == 20  # half of what stays free above 100
    assert lease_size(1000, 104, 32) == 2
    assert lease_size(1000, 103, 32) == 0  # a lease of one would save nothing
    assert lease_size(1000, 50, 32) == 0


def test_lent_units_count_as_used_and_remaining_leaves_them_in() -> None:
    window = MinuteWindow()
    decision = window.decide("a1", "k1", LIMIT, None, T0 + 1, lease=32)
    assert decision == Decision(True, LIMIT, 999, RESET, lease=32)
    assert window.accounts["a1"] == 33 and window.leased["a1"] == 32
    assert window.decide("a1", "k1", LIMIT, None, T0 + 1).remaining == 966


def test_a_key_with_its_own_limit_is_never_lent() -> None:
    window = MinuteWindow()
    assert window.decide("a1", "k1", LIMIT, 5000, T0 + 1, lease=32).lease == 0
    assert window.decide("a1", "k1", LIMIT, 50, T0 + 1, lease=32).lease == 0


def test_settling_gives_back_only_the_unused_units_and_only_once() -> None:
    window = MinuteWindow()
    window.decide("a1", "k1", LIMIT, None, T0 + 1, lease=32)
    assert window.settle("a1", granted=32, unused=12, reset=RESET)
    assert window.accounts["a1"] == 21 and "a1" not in window.leased
    assert not window.settle("a1", granted=32, unused=12, reset=RESET)  # nothing lent now
    assert window.accounts["a1"] == 21


def test_a_settlement_is_bounded_by_what_is_lent() -> None:
    window = MinuteWindow()
    window.decide("a1", "k1", LIMIT, None, T0 + 1, lease=10)
    assert window.settle("a1", granted=500, unused=500, reset=RESET)  # a confused edge
    assert window.accounts["a1"] == 1  # only the 10 lent came back; the request stays counted


def test_a_settlement_of_another_window_changes_nothing() -> None:
    window = MinuteWindow()
    window.decide("a1", "k1", LIMIT, None, T0 + 1, lease=32)
    assert not window.settle("a1", granted=32, unused=32, reset=RESET - 60)
    assert window.accounts["a1"] == 33


def test_unsettled_leases_fall_due_and_then_count_as_used() -> None:
    window = MinuteWindow()
    window.decide("a1", "k1", LIMIT, None, T0 + 1, lease=32)
    assert window.unsettled("a1", T0 + 1) == pytest.approx(LEASE_DUE_SECONDS)
    assert window.unsettled("a2", T0 + 1) == 0
    assert window.unsettled("a1", T0 + 1 + LEASE_DUE_SECONDS) == 0
    assert "a1" not in window.leased and window.accounts["a1"] == 33
    assert not window.settle("a1", granted=32, unused=32, reset=RESET)  # too late: used


def test_restored_counts_keep_lent_units_as_used() -> None:
    window = MinuteWindow()
    window.decide("a1", "k1", LIMIT, None, T0 + 1, lease=32)
    fresh = MinuteWindow()
    fresh.restore(window.minute, window.accounts, window.keys)
    assert not fresh.settle("a1", granted=32, unused=32, reset=RESET)
    assert fresh.accounts["a1"] == 33


def grant(book: LeaseBook, account: str, remaining: int, lease: int, now: float) -> None:
    units, settles = book.ask(account, now)
    assert units == book.units and settles is None
    book.answered(account, Decision(True, LIMIT, remaining, RESET, lease=lease), now)


def test_an_edge_counts_its_lease_down_from_what_the_decision_left() -> None:
    book = LeaseBook(units=32)
    grant(book, "a1", remaining=999, lease=3, now=T0 + 1)
    taken = [book.take("a1", T0 + 1.01) for _ in range(4)]
    assert [d.remaining if d else None for d in taken] == [998, 997, 996, None]
    assert all(d.admitted and d.reset == RESET and d.limit == LIMIT for d in taken[:3] if d)


def test_the_next_decision_settles_the_lease_it_replaces() -> None:
    book = LeaseBook(units=32)
    grant(book, "a1", remaining=999, lease=3, now=T0 + 1)
    book.take("a1", T0 + 1.01)
    assert book.ask("a1", T0 + 1.02) == (32, Settle("a1", 3, 2, RESET))
    assert book.take("a1", T0 + 1.02) is None  # settled: no more units here


def test_one_decision_at_a_time_asks_for_a_lease() -> None:
    book = LeaseBook(units=32)
    assert book.ask("a1", T0 + 1) == (32, None)
    assert book.ask("a1", T0 + 1) == (0, None)
    book.answered("a1", None, T0 + 1)  # the first failed
    assert book.ask("a1", T0 + 1) == (32, None)


def test_a_lease_is_not_used_after_its_time_or_its_window() -> None:
    book = LeaseBook(units=32)
    grant(book, "a1", remaining=999, lease=30, now=T0 + 1)
    assert book.take("a1", T0 + 1 + LEASE_SECONDS) is None
    book = LeaseBook(units=32)
    grant(book, "a1", remaining=999, lease=30, now=RESET - 0.05)
    assert book.take("a1", RESET) is None


def test_leases_that_are_over_are_settled_by_partition_in_lending_order() -> None:
    book = LeaseBook(units=32)
    grant(book, "a1", remaining=999, lease=10, now=T0 + 1)
    grant(book, "a2", remaining=999, lease=10, now=T0 + 1.1)
    book.take("a1", T0 + 1.1)
    assert book.due(T0 + 1 + LEASE_SECONDS - 0.01) == {}
    assert book.due(T0 + 1 + LEASE_SECONDS) == {partition_of("a1"): [Settle("a1", 10, 9, RESET)]}
    assert len(book) == 1
    assert book.due(RESET) == {}  # a2's window is over: nothing to give back
    assert len(book) == 0


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


def test_a_renewal_lends_without_admitting_a_request() -> None:
    window = MinuteWindow()
    window.decide("a1", "k1", LIMIT, None, T0 + 1, lease=32)  # 1 admitted, 32 lent
    renewal = window.decide("a1", "k1", LIMIT, None, T0 + 1.1, lease=32, renew=True)
    assert renewal == Decision(True, LIMIT, 967, RESET, lease=32)
    assert window.accounts["a1"] == 65 and window.leased["a1"] == 64
    window.accounts["a1"] = 950  # near the limit: nothing is lent, and nothing admitted
    assert window.decide("a1", "k1", LIMIT, None, T0 + 2, lease=32, renew=True) == Decision(
        False, LIMIT, 50, RESET
    )
    assert window.accounts["a1"] == 950


def test_a_renewal_is_due_at_half_of_the_units_or_of_the_time() -> None:
    book = LeaseBook(units=32)
    grant(book, "a1", remaining=999, lease=8, now=T0 + 1)
    for _ in range(3):
        book.take("a1", T0 + 1)
        assert not book.renewal_due("a1", T0 + 1)
    book.take("a1", T0 + 1)  # 4 of 8 left
    assert book.renewal_due("a1", T0 + 1)
    assert not book.renewal_due("a1", T0 + 1)  # one renewal at a time
    grant(book, "a2", remaining=999, lease=8, now=T0 + 1)
    book.take("a2", T0 + 1)
    assert not book.renewal_due("a2", T0 + 1 + LEASE_SECONDS * 0.45)
    assert book.renewal_due("a2", T0 + 1 + LEASE_SECONDS * 0.55)


def test_a_renewal_adds_to_the_lease_and_the_count_goes_on() -> None:
    book = LeaseBook(units=32)
    grant(book, "a1", remaining=999, lease=4, now=T0 + 1)  # 999 for the asking request
    seen = [book.take("a1", T0 + 1) for _ in range(3)]  # 998, 997, 996
    assert book.renewal_due("a1", T0 + 1)
    # Meanwhile (one edge alone) the usage service counts 1 + 4 used: 995 remain before the
    # renewal's 4, which are lent on top of the 1 unit still left here.
    book.answered("a1", Decision(True, LIMIT, 995, RESET, lease=4), T0 + 1.1)
    seen += [book.take("a1", T0 + 1.1) for _ in range(6)]
    assert [d.remaining if d else None for d in seen] == [
        998,
        997,
        996,
        995,
        994,
        993,
        992,
        991,
        None,
    ]
    assert book.due(T0 + 1.1 + LEASE_SECONDS) == {partition_of("a1"): [Settle("a1", 8, 0, RESET)]}


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


async def test_the_usage_service_holds_refusals_for_leases_but_never_renewals() -> None:
    async def lookup(account_id: str) -> str | None:
        return "enterprise"

    service = Deciding(
        PlanBook(lookup), {"enterprise": LIMIT}, tuple(range(USAGE_PARTITIONS)), lambda: T0 + 1
    )
    window = service.windows[partition_of("a1")]
    window.decide("a1", "k1", LIMIT, None, T0 + 1, lease=32)  # 32 lent, not yet settled
    window.accounts["a1"] = LIMIT
    renewal = DecideBatch([Decide("a1", "k1", None, "enterprise", 32, renew=True)])
    answer = await service.decide(msgspec.json.encode(renewal))
    assert isinstance(answer, bytes)  # answered at once: refused, nothing lent
    assert decision_batch_decoder.decode(answer).decisions == [Decision(False, LIMIT, 0, RESET)]
    request = DecideBatch([Decide("a1", "k1", None, "enterprise")])
    held = await service.decide(msgspec.json.encode(request))
    assert not isinstance(held, bytes)  # waits for the 32 to be settled
    service.settle(
        msgspec.json.encode(Settlements([Settle("a1", 32, 5, RESET)])), partition_of("a1")
    )
    answer = await held
    assert decision_batch_decoder.decode(answer).decisions == [Decision(True, LIMIT, 4, RESET)]


def test_a_renewal_tops_the_lease_up_so_a_lease_in_little_use_does_not_grow() -> None:
    book = LeaseBook(units=32)
    grant(book, "a1", remaining=999, lease=32, now=T0 + 1)
    late = T0 + 1 + LEASE_SECONDS * 0.8  # most of its time gone
    for _ in range(11):
        book.take("a1", late)
    assert book.renewal_due("a1", late) == 11  # back up to 32


def slow(book: LeaseBook, round_trip: float) -> float:
    """Decisions that lend come back after `round_trip`, until the book's estimate is that;
    returns the time of the last answer."""
    now = T0 + 1
    for _ in range(60):
        book.ask("other", now)
        now += round_trip
        book.answered("other", Decision(True, LIMIT, 999, RESET, lease=32), now)
    assert book.round_trip == pytest.approx(round_trip, rel=0.01)
    return now


def test_a_busy_lease_whose_time_runs_out_with_units_to_spare_is_extended() -> None:
    book = LeaseBook(units=32)
    now = slow(book, 0.03)
    book.ask("a1", now)
    book.answered("a1", Decision(True, LIMIT, 999, RESET, lease=64), now)
    for _ in range(8):  # 8 requests in 0.16 s: more than one per round trip
        book.take("a1", now + LEASE_SECONDS * 0.8)
    assert book.renewal_due("a1", now + LEASE_SECONDS * 0.4) == 0  # 56 left, time too
    late = now + LEASE_SECONDS * 0.8
    assert book.renewal_due("a1", late) == 2  # no more units needed: only more time
    # the usage service counts 1 + 64 used: 935 remain before the renewal's 2
    book.answered("a1", Decision(True, LIMIT, 1000 - 65, RESET, lease=2), late)
    after = book.take("a1", now + LEASE_SECONDS * 1.5)  # the first lease would be over
    assert after is not None and after.remaining == 999 - 9


def test_a_slow_accounts_lease_ends_and_is_settled_rather_than_extended() -> None:
    book = LeaseBook(units=32)
    now = slow(book, 0.03)
    book.ask("a1", now)
    book.answered("a1", Decision(True, LIMIT, 999, RESET, lease=32), now)
    book.take("a1", now + LEASE_SECONDS * 0.8)  # 1 request in 0.16 s: less than one per trip
    assert book.renewal_due("a1", now + LEASE_SECONDS * 0.8) == 0
    over = book.due(now + LEASE_SECONDS)[partition_of("a1")]
    assert over == [Settle("a1", 32, 31, RESET)]  # its 31 unused units go back


def test_renewals_go_out_earlier_when_decisions_take_long_to_come_back() -> None:
    quick, slow = LeaseBook(units=32), LeaseBook(units=32)
    now = T0 + 1
    for _ in range(40):  # decisions that lend come back after 80 ms
        for account in ("a1", "a2"):
            slow.ask(account, now - 0.08)
            slow.answered(account, Decision(True, LIMIT, 999, RESET, lease=32), now)
        now += 0.1
    slow.answered("a1", None, now + 5)  # a failed one: its time says nothing
    assert slow.round_trip == pytest.approx(0.08, rel=0.01)  # so 2 round trips are 0.16 s
    now -= 0.1
    for account in ("a1", "a2"):
        grant(quick, account, remaining=999, lease=32, now=now)
        for book in (quick, slow):
            book.take(account, now)
    # By time: half of the lease's 0.2 s is enough ahead for one, not the other.
    for book in (quick, slow):
        assert book.renewal_due("a1", now + 0.03) == 0
    assert quick.renewal_due("a1", now + 0.05) == 0
    assert slow.renewal_due("a1", now + 0.05) == 2  # only time is short: the least lent
    # By units: at 25 of 32 left for one, at half for the other; sized to the pace while the
    # lease lasts and while the renewal is out.
    for book in (quick, slow):
        for _ in range(6):
            book.take("a2", now + 0.02)
    assert quick.renewal_due("a2", now + 0.02) == 0
    assert slow.renewal_due("a2", now + 0.02) == round(7 * 0.28 / 0.02) - 25
    for _ in range(9):
        quick.take("a2", now + 0.02)
    assert quick.renewal_due("a2", now + 0.02) == round(16 * 0.2 / 0.02) - 16


def test_a_renewal_sizes_a_busy_lease_to_its_pace_up_to_a_limit() -> None:
    book = LeaseBook(units=32)
    grant(book, "a1", remaining=9999, lease=32, now=T0 + 1)
    for _ in range(16):  # half of it in 20 ms: 160 in a lease's time (0.2 s)
        book.take("a1", T0 + 1.02)
    assert book.renewal_due("a1", T0 + 1.02) == 160 - 16
    book.answered("a1", Decision(True, LIMIT, 9999 - 33 - 144, RESET, lease=144), T0 + 1.03)
    for _ in range(80):  # a burst: half of the 160 at once
        book.take("a1", T0 + 1.03)
    assert book.renewal_due("a1", T0 + 1.03) == book.most - 80 == 32 * GROWTH - 80
