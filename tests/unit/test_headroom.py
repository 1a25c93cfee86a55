"""When the forwarder may send a safe request upstream before its decision is back: only for
an account whose last exact decision, in the current window, left a clear margin."""

from __future__ import annotations

from aitbc_contracts.usage import Decide, Decision
from aitbc_gate.decisions import DecisionBatcher
from aitbc_gate.limits import RateLimiter


class Answers:
    """Stands in for the batcher: answers each decision from a queue."""

    def __init__(self, *decisions: Decision) -> None:
        self.decisions = list(decisions)

    async def decide(self, item: Decide) -> Decision:
        return self.decisions.pop(0)


def limiter(*decisions: Decision) -> RateLimiter:
    batcher: DecisionBatcher = Answers(*decisions)  # type: ignore[assignment]
    return RateLimiter(batcher, {"free": 60, "pro": 600}, fail_open=True)


async def test_no_headroom_is_assumed_before_a_first_decision() -> None:
    assert not limiter().has_headroom("acc_1", now=100.0)


async def test_headroom_holds_while_more_than_a_tenth_and_ten_requests_are_left() -> None:
    rl = limiter(
        Decision(True, 600, 61, 160), Decision(True, 600, 60, 160), Decision(True, 60, 11, 160)
    )
    await rl.check("acc_1", "key_1", "pro", None)
    assert rl.has_headroom("acc_1", now=100.0)
    assert not rl.has_headroom("acc_2", now=100.0)
    await rl.check("acc_1", "key_1", "pro", None)  # 60 of 600 left: a tenth, not more
    assert not rl.has_headroom("acc_1", now=100.0)
    await rl.check("acc_1", "key_1", "free", None)  # 11 of 60: more than 10
    assert rl.has_headroom("acc_1", now=100.0)


async def test_headroom_ends_with_its_window() -> None:
    rl = limiter(Decision(True, 600, 500, 160))
    await rl.check("acc_1", "key_1", "pro", None)
    assert rl.has_headroom("acc_1", now=159.9) and not rl.has_headroom("acc_1", now=160.0)


async def test_a_refusal_or_a_keys_own_limit_gives_no_headroom() -> None:
    rl = limiter(Decision(True, 600, 500, 160), Decision(False, 600, 0, 160))
    await rl.check("acc_1", "key_1", "pro", None)
    await rl.check("acc_1", "key_1", "pro", None)
    assert not rl.has_headroom("acc_1", now=100.0)
    own = limiter(Decision(True, 5, 4, 160))
    await own.check("acc_1", "key_1", "pro", key_limit=5)  # says nothing of the account
    assert not own.has_headroom("acc_1", now=100.0)


async def test_no_speculation_while_a_lease_admits_at_once() -> None:
    now = 1_800_000_001.0  # one clock for the limiter and the test: the lease cannot run out
    granting = Answers(Decision(True, 6000, 5999, int(now) + 59, lease=2))
    batcher: DecisionBatcher = granting  # type: ignore[assignment]
    rl = RateLimiter(
        batcher, {"enterprise": 6000}, fail_open=True, lease_units=32, clock=lambda: now
    )
    await rl.check("acc_1", "key_1", "enterprise", None)
    assert rl.has_headroom("acc_1", now=now)
    assert not rl.worth_speculating("acc_1", now=now)  # the lease decides at once
    for _ in range(2):
        await rl.check("acc_1", "key_1", "enterprise", None)
    assert rl.worth_speculating("acc_1", now=now)  # used up: the next is a round trip
