"""Leases, as pure logic: what the counting authority lends and takes back (MinuteWindow, and
the usage service's Deciding around it). What an edge admits from them: test_lease_book.py and
test_lease_limiter.py; over real NATS: tests/integration/usage/test_leases.py."""

from __future__ import annotations

import msgspec
import pytest

from aitbc_contracts.ratelimit import MinuteWindow, lease_size
from aitbc_contracts.subjects import USAGE_PARTITIONS, partition_of
from aitbc_contracts.usage import (
    LEASE_DUE_SECONDS,
    LEASE_MIN_LIMIT,
    Decide,
    DecideBatch,
    Decision,
    Settle,
    Settlements,
    decision_batch_decoder,
)
from aitbc_usage.handlers import Deciding
from aitbc_usage.plans import PlanBook
from tests.unit.lease_window import LIMIT, RESET, T0


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


def test_units_lent_before_a_handover_come_back_to_the_next_holder() -> None:
    window = MinuteWindow()
    window.decide("a1", "k1", LIMIT, None, T0 + 1, lease=32)
    fresh = MinuteWindow()
    fresh.restore(window.minute, window.accounts, window.keys, window.leased, now=T0 + 2)
    assert fresh.unsettled("a1", T0 + 2) == pytest.approx(LEASE_DUE_SECONDS)
    assert fresh.settle("a1", granted=32, unused=30, reset=RESET)
    assert fresh.accounts["a1"] == 3 and "a1" not in fresh.leased
    assert not fresh.settle("a1", granted=32, unused=30, reset=RESET)  # once only


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
