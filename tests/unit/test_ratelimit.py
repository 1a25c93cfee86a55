"""The counting rule, as histories against an injected clock."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from aitbc_contracts.ratelimit import MinuteWindow
from aitbc_contracts.subjects import USAGE_PARTITIONS, partition_of
from aitbc_contracts.usage import Decide, DecideBatch, decision_batch_decoder
from aitbc_usage.handlers import (
    MAX_BATCH,
    MAX_PENDING_LOOKUPS,
    PLANS_BUSY,
    UNKNOWN_ACCOUNT,
    WRONG_PARTITION,
    Deciding,
)
from aitbc_usage.plans import PlanBook

T0 = 1_800_000_000.0  # a minute boundary: 1_800_000_000 / 60 is whole
LIMITS = {"free": 60, "pro": 600, "enterprise": 6000}


def run(
    window: MinuteWindow,
    n: int,
    now: float,
    limit: int = 60,
    key_limit: int | None = None,
    key: str = "k1",
):
    return [window.decide("a1", key, limit, key_limit, now) for _ in range(n)]


def test_exactly_the_limit_is_admitted_in_a_minute() -> None:
    decisions = run(MinuteWindow(), 70, T0 + 5)
    assert sum(d.admitted for d in decisions) == 60
    assert [d.remaining for d in decisions[:3]] == [59, 58, 57]
    assert all(not d.admitted and d.remaining == 0 for d in decisions[60:])
    assert {d.reset for d in decisions} == {T0 + 60}


def test_remaining_never_rises_within_a_minute() -> None:
    decisions = run(MinuteWindow(), 70, T0 + 1)
    remaining = [d.remaining for d in decisions]
    assert remaining == sorted(remaining, reverse=True)


def test_the_window_is_the_calendar_minute() -> None:
    window = MinuteWindow()
    assert sum(d.admitted for d in run(window, 70, T0 + 59.999)) == 60
    after = run(window, 1, T0 + 60)[0]
    assert after.admitted and after.remaining == 59 and after.reset == T0 + 120


def test_limited_requests_do_not_count() -> None:
    window = MinuteWindow()
    run(window, 100, T0 + 1)
    assert window.accounts["a1"] == 60


def test_a_plan_change_mid_minute_applies_to_the_next_request() -> None:
    window = MinuteWindow()
    assert sum(d.admitted for d in run(window, 70, T0 + 1, limit=60)) == 60
    upgraded = run(window, 600, T0 + 2, limit=600)
    assert sum(d.admitted for d in upgraded) == 540  # 600 in all this minute
    assert upgraded[0].limit == 600 and upgraded[0].remaining == 539


def test_a_key_limit_below_the_plan_limits_that_key_only() -> None:
    window = MinuteWindow()
    limited_key = run(window, 10, T0 + 1, key_limit=5, key="k1")
    assert sum(d.admitted for d in limited_key) == 5
    assert limited_key[0].limit == 5 and limited_key[0].remaining == 4
    other = run(window, 60, T0 + 2, key="k2")
    assert sum(d.admitted for d in other) == 55  # the account's 60 include k1's 5


def test_a_key_limit_above_the_plan_changes_nothing() -> None:
    decisions = run(MinuteWindow(), 70, T0 + 1, key_limit=1000)
    assert sum(d.admitted for d in decisions) == 60 and decisions[0].limit == 60


def test_a_clock_step_back_does_not_reopen_a_window() -> None:
    window = MinuteWindow()
    run(window, 60, T0 + 61)
    assert not run(window, 1, T0 + 59)[0].admitted


def test_restored_counts_keep_the_minute_spent() -> None:
    window = MinuteWindow()
    window.restore(int(T0 // 60), {"a1": 58}, {})
    assert sum(d.admitted for d in run(window, 5, T0 + 3)) == 2


# --- the usage service's handler around the rule --------------------------------------------


def deciding(plans: dict[str, str], clock: float = T0 + 1) -> Deciding:
    async def lookup(account_id: str) -> str | None:
        return plans.get(account_id)

    return Deciding(PlanBook(lookup), LIMITS, tuple(range(USAGE_PARTITIONS)), clock=lambda: clock)


async def decide(service: Deciding, *items: Decide):
    reply = await service.decide(msgspec.json.encode(DecideBatch(list(items))))
    return decision_batch_decoder.decode(reply).decisions


async def test_unknown_accounts_and_bad_limits_are_refused() -> None:
    service = deciding({"acc_known": "free"})
    unknown, bad, good = await decide(
        service,
        Decide("acc_nobody", "k"),
        Decide("acc_known", "k", key_limit=-3),
        Decide("acc_known", "k"),
    )
    assert (unknown.admitted, unknown.code) == (False, UNKNOWN_ACCOUNT)
    assert (bad.admitted, bad.code) == (False, "VALIDATION_ERROR")
    assert good.admitted and good.remaining == 59


async def test_a_partition_not_owned_is_refused() -> None:
    account = "acc_elsewhere"

    async def lookup(_: str) -> str | None:
        return "free"

    owned = tuple(p for p in range(USAGE_PARTITIONS) if p != partition_of(account))
    service = Deciding(PlanBook(lookup), LIMITS, owned, clock=lambda: T0)
    [decision] = await decide(service, Decide(account, "k"))
    assert decision.code == WRONG_PARTITION


async def test_items_misrouted_to_another_partition_are_refused() -> None:
    mine, other = "acc_mine", "acc_other"
    while partition_of(other) == partition_of(mine):
        other += "x"
    service = deciding({mine: "free", other: "free"})
    batch = DecideBatch([Decide(mine, "k"), Decide(other, "k"), Decide(mine, "k")])
    reply = await service.decide(msgspec.json.encode(batch), partition_of(mine))
    first, misrouted, second = decision_batch_decoder.decode(reply).decisions
    assert first.admitted and second.admitted and second.remaining == 58
    assert (misrouted.admitted, misrouted.code) == (False, WRONG_PARTITION)


@pytest.mark.parametrize(
    "payload", [b"", b"{", b'{"items": 5}', b'{"items": [[1, 2]]}', b"\xff" * 100]
)
async def test_malformed_batches_are_rejected(payload: bytes) -> None:
    reply = msgspec.json.decode(await deciding({}).decide(payload))
    assert reply["type"] == "rejected" and reply["code"] == "VALIDATION_ERROR"


async def test_batches_waiting_for_plans_are_bounded_and_the_rest_answered_at_once() -> None:
    """Batches whose plans must be asked for wait apart from their subscription; made-up
    accounts could pile them up without end while the keys service is slow. Past
    MAX_PENDING_LOOKUPS accounts waiting, their items are refused at once."""
    asked = asyncio.Event()
    answer = asyncio.Event()

    async def slow(account_id: str) -> str | None:
        asked.set()
        await answer.wait()
        return "free" if account_id == "acc_known" else None

    service = Deciding(PlanBook(slow), LIMITS, tuple(range(USAGE_PARTITIONS)), clock=lambda: T0)
    strangers = [Decide(f"acc_{n}", "k") for n in range(MAX_BATCH)]
    waiting = []
    for _ in range(MAX_PENDING_LOOKUPS // MAX_BATCH):
        waiting.append(service.answer(msgspec.json.encode(DecideBatch(strangers))))
        assert not isinstance(waiting[-1], bytes)  # waits for its plans
    now = service.answer(msgspec.json.encode(DecideBatch([Decide("acc_known", "k")])))
    assert isinstance(now, bytes)  # answered at once, not piled up
    [busy] = decision_batch_decoder.decode(now).decisions
    assert (busy.admitted, busy.code) == (False, PLANS_BUSY)
    tasks = [asyncio.ensure_future(x) for x in waiting if not isinstance(x, bytes)]
    await asyncio.wait_for(asked.wait(), 5)
    answer.set()
    for done in await asyncio.gather(*tasks):
        assert {d.code for d in decision_batch_decoder.decode(done).decisions} == {UNKNOWN_ACCOUNT}
    later = service.answer(msgspec.json.encode(DecideBatch([Decide("acc_known", "k")])))
    assert not isinstance(later, bytes)  # room again: its plan is asked for
    [admitted] = decision_batch_decoder.decode(await later).decisions
    assert admitted.admitted
