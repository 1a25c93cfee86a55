"""Every window of a plan (second, minute, UTC day), as histories against an injected clock."""

from __future__ import annotations

import msgspec

from aitbc_contracts.plans import DAY, Plan, PlanTable
from aitbc_contracts.subjects import USAGE_PARTITIONS
from aitbc_contracts.usage import Decide, DecideBatch, Decision, decision_batch_decoder
from aitbc_contracts.windows import Windows
from aitbc_usage.handlers import Deciding
from aitbc_usage.metrics import SHADOW_REFUSALS
from aitbc_usage.plans import PlanBook

T0 = 1_800_000_000.0 - 1_800_000_000.0 % DAY  # midnight UTC, so a minute and a second boundary
BURSTY = Plan(60, burst_per_second=10)
QUOTA = Plan(600, per_day=100)


def take(windows: Windows, plan: Plan, n: int, now: float, key_limit: int | None = None):
    return [windows.decide_windows("a1", "k1", plan, key_limit, now) for _ in range(n)]


def test_a_burst_limit_admits_exactly_its_requests_in_a_second() -> None:
    windows = Windows()
    first = take(windows, BURSTY, 12, T0 + 0.1)
    assert sum(d.admitted for d in first) == 10
    assert first[10] == Decision(False, 10, 0, int(T0) + 1, window=1)
    later = take(windows, BURSTY, 12, T0 + 1.5)  # the next second: ten more
    assert sum(d.admitted for d in later) == 10
    assert windows.accounts["a1"] == 20  # the minute counts every admitted request


def test_the_minute_still_limits_a_plan_with_a_burst_limit() -> None:
    windows = Windows()
    admitted = [sum(d.admitted for d in take(windows, BURSTY, 10, T0 + s)) for s in range(8)]
    assert admitted == [10, 10, 10, 10, 10, 10, 0, 0]
    assert take(windows, BURSTY, 1, T0 + 9)[0] == Decision(False, 60, 0, int(T0) + 60)


def test_a_daily_quota_holds_across_minutes_and_opens_at_midnight_utc() -> None:
    windows = Windows()
    admitted = [sum(d.admitted for d in take(windows, QUOTA, 30, T0 + 60 * m)) for m in range(5)]
    assert admitted == [30, 30, 30, 10, 0]
    refusal = take(windows, QUOTA, 1, T0 + 3600)[0]
    assert refusal == Decision(False, 100, 0, int(T0) + DAY, window=DAY)
    assert take(windows, QUOTA, 1, T0 + DAY - 0.001)[0].window == DAY  # still today
    assert take(windows, QUOTA, 1, T0 + DAY)[0].admitted  # a new day
    stepped_back = take(windows, QUOTA, 1, T0 + 10)[0]  # the clock stepped back: still the new day
    assert (stepped_back.admitted, stepped_back.remaining) == (True, 98)


def test_the_headers_window_is_the_one_with_the_fewest_requests_left() -> None:
    windows = Windows()
    plan = Plan(60, burst_per_second=10, per_day=65)
    first = take(windows, plan, 1, T0 + 0.5)[0]
    assert (first.window, first.limit, first.remaining) == (1, 10, 9)  # 9 of the second left
    for second in range(1, 6):
        take(windows, plan, 10, T0 + second)  # 51 admitted: 9 left in the minute, 14 today
    closest = take(windows, plan, 1, T0 + 7)[0]
    assert (closest.window, closest.remaining, closest.reset) == (60, 8, int(T0) + 60)
    take(windows, plan, 8, T0 + 8)  # the minute is full, and 6 are left of the day
    refused = take(windows, plan, 1, T0 + 9)[0]
    assert (refused.admitted, refused.window) == (False, 60)
    next_minute = take(windows, plan, 1, T0 + 61)[0]
    assert (next_minute.window, next_minute.remaining) == (DAY, 4)  # the day: 5 were left


def test_a_tie_reports_the_longer_window_and_several_full_windows_name_the_longest() -> None:
    windows = Windows()
    plan = Plan(60, burst_per_second=5, per_day=5)
    decisions = take(windows, plan, 6, T0 + 0.5)
    assert [d.window for d in decisions] == [DAY] * 6  # 4, 3... left of both: the day's
    assert decisions[-1] == Decision(False, 5, 0, int(T0) + DAY, window=DAY)


def test_a_key_limit_is_a_minute_of_its_own_beside_the_accounts_windows() -> None:
    windows = Windows()
    decisions = take(windows, BURSTY, 10, T0 + 0.5, key_limit=4)
    assert sum(d.admitted for d in decisions) == 4
    assert decisions[4] == Decision(False, 4, 0, int(T0) + 60)
    assert windows.seconds["a1"] == 4 and windows.keys["k1"] == 4


def test_counts_restored_after_a_handover_keep_the_day_and_the_second() -> None:
    windows = Windows()
    take(windows, Plan(600, burst_per_second=10, per_day=50), 10, T0 + 0.5)
    successor = Windows()
    successor.restore_longer(windows.second, windows.seconds, windows.day, windows.days)
    plan = Plan(600, burst_per_second=10, per_day=50)
    assert not take(successor, plan, 1, T0 + 0.9)[0].admitted  # the same second: full
    later = [take(successor, plan, 10, T0 + 120 + second) for second in range(5)]
    assert sum(d.admitted for decisions in later for d in decisions) == 40  # of the day's 50


# --- the usage service: windows per plan, shadow mode ------------------------------------------


def deciding(table: dict[str, Plan], clock: list[float]) -> Deciding:
    async def lookup(account_id: str) -> str | None:
        return account_id.removeprefix("acc_").split("_")[0]  # acc_<plan>_n is on <plan>

    partitions = tuple(range(USAGE_PARTITIONS))
    return Deciding(PlanBook(lookup), PlanTable("", table), partitions, lambda: clock[0])


async def decide(service: Deciding, *items: Decide) -> list[Decision]:
    reply = await service.decide(msgspec.json.encode(DecideBatch(list(items))))
    assert isinstance(reply, bytes)
    return decision_batch_decoder.decode(reply).decisions


async def test_plans_with_more_than_a_minute_are_never_lent_units() -> None:
    clock = [T0 + 0.5]
    service = deciding({"big": Plan(100_000, per_day=50_000), "plain": Plan(100_000)}, clock)
    windowed, plain = await decide(
        service, Decide("acc_big_1", "k", lease=32), Decide("acc_plain_1", "k", lease=32)
    )
    assert windowed.admitted and windowed.lease == 0 and windowed.window == DAY
    assert plain.admitted and plain.lease == 32


async def test_shadow_mode_admits_what_its_limits_refuse_and_counts_none_of_it() -> None:
    clock = [T0 + 0.5]
    service = deciding(
        {"shadow": Plan(60, burst_per_second=3, shadow=True), "free": Plan(60)}, clock
    )
    seen = SHADOW_REFUSALS[1]._value.get()
    decisions = await decide(service, *[Decide("acc_shadow_1", "k") for _ in range(5)])
    assert [d.admitted for d in decisions] == [True] * 5
    assert [d.shadow for d in decisions] == [False, False, False, True, True]
    assert decisions[4] == Decision(True, 3, 0, int(T0) + 1, window=1, shadow=True)
    assert SHADOW_REFUSALS[1]._value.get() == seen + 2
    [counted] = [w.accounts["acc_shadow_1"] for w in service.windows.values() if w.accounts]
    assert counted == 3  # the would-be refusals used no units
    # A key in shadow mode on an enforced plan: its refusals alone are admitted.
    keyed = await decide(service, *[Decide("acc_free_1", "k", key_limit=2, shadow=True)] * 3)
    enforced = await decide(service, Decide("acc_free_1", "k2", key_limit=2))
    assert [(d.admitted, d.shadow) for d in keyed] == [(True, False)] * 2 + [(True, True)]
    assert enforced[0].admitted
    other = await decide(service, *[Decide("acc_free_1", "k2", key_limit=2)] * 2)
    assert [d.admitted for d in other] == [True, False]  # not in shadow: refused
