"""Leases, as pure logic: what an edge admits from them and when it renews or settles them
(LeaseBook). What is lent: test_leases.py."""

from __future__ import annotations

import pytest

from aitbc_contracts.subjects import partition_of
from aitbc_contracts.usage import LEASE_SECONDS, Decision, Settle
from aitbc_gate.leases import GROWTH, LeaseBook
from tests.unit.lease_window import LIMIT, RESET, T0


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
