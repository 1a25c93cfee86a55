"""What a client is told of a plan's windows: the headers of the window closest to refusing,
every policy in RateLimit-Policy, a 429 naming its window, and shadow mode."""

from __future__ import annotations

from pathlib import Path

from aitbc_contracts.plans import DAY, Plan, PlanTable
from aitbc_contracts.usage import Decide, Decision
from aitbc_gate.decisions import DecisionBatcher, UsageUnavailable
from aitbc_gate.limits import RateLimiter, Verdict
from aitbc_gate.policies import exceeded
from aitbc_gate.rate_limit_headers import RateLimitHeaders
from tests.unit.lease_window import T0

PLANS = {
    "free": Plan(60, burst_per_second=10, per_day=10_000),
    "pro": Plan(600),
    "trial": Plan(60, shadow=True),
}


class Usage:
    """Answers each decision with the next of `decisions`, and keeps what it was asked."""

    def __init__(self, *decisions: Decision) -> None:
        self.decisions = list(decisions)
        self.asked: list[Decide] = []

    async def decide(self, item: Decide) -> Decision:
        self.asked.append(item)
        return self.decisions.pop(0)


class Away:
    async def decide(self, item: Decide) -> Decision:
        raise UsageUnavailable("no responders")


def limiter(usage: object, fail_open: bool = True) -> RateLimiter:
    batcher: DecisionBatcher = usage  # type: ignore[assignment]
    return RateLimiter(batcher, PlanTable("", PLANS), fail_open, 32, clock=lambda: T0)


def headers(verdict: Verdict, now: float = T0) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in RateLimitHeaders().of(verdict, now)}


async def test_the_headers_report_the_window_closest_to_refusing_and_list_every_policy() -> None:
    second = Decision(True, 10, 3, int(T0) + 1, window=1)
    usage = Usage(second)
    verdict = await limiter(usage).check("acc_1", "key_1", "free", None)
    assert usage.asked[0].lease == 0  # a plan with a second and a day is never lent
    assert headers(verdict, T0 + 0.5) == {
        "x-ratelimit-mode": "exact",
        "x-ratelimit-limit": "10",
        "x-ratelimit-reset": str(int(T0) + 1),
        "ratelimit-policy": '"free";q=60;w=60, "free-burst";q=10;w=1, "free-day";q=10000;w=86400',
        "x-ratelimit-remaining": "3",
        "ratelimit": '"free-burst";r=3;t=1',
    }
    day = Decision(False, 10_000, 0, int(T0) + DAY, window=DAY)
    refused = await limiter(Usage(day)).check("acc_1", "key_1", "free", None)
    assert headers(refused)["ratelimit"] == f'"free-day";r=0;t={DAY}'


async def test_a_key_limit_names_the_minute_key_beside_the_plans_other_windows() -> None:
    minute = Decision(True, 5, 4, int(T0) + 60)
    verdict = await limiter(Usage(minute)).check("acc_1", "key_1", "free", 5)
    assert headers(verdict)["ratelimit-policy"] == (
        '"key";q=5;w=60, "free-burst";q=10;w=1, "free-day";q=10000;w=86400'
    )
    assert headers(verdict)["ratelimit"] == '"key";r=4;t=60'


async def test_a_plan_of_a_minute_alone_keeps_its_headers_as_they_were() -> None:
    verdict = await limiter(Usage(Decision(True, 600, 599, int(T0) + 60))).check(
        "acc_1", "key_1", "pro", None
    )
    assert verdict.policies is None
    assert headers(verdict)["ratelimit-policy"] == '"pro";q=600;w=60'


def test_a_refusal_names_its_window() -> None:
    assert exceeded(Decision(False, 10, 0, 1, window=1)) == (
        "Rate limit of 10 requests per second exceeded"
    )
    assert exceeded(Decision(False, 60, 0, 60)) == "Rate limit of 60 requests per minute exceeded"
    assert exceeded(Decision(False, 10_000, 0, DAY, window=DAY)) == (
        "Daily quota of 10000 requests exceeded"
    )


async def test_shadow_mode_is_reported_for_the_plan_and_for_a_key_and_carried_to_usage() -> None:
    usage = Usage(Decision(True, 60, 0, int(T0) + 60, shadow=True), Decision(True, 60, 5, 0))
    shadow_plan = await limiter(usage).check("acc_1", "key_1", "trial", None)
    assert shadow_plan.mode == "shadow" and headers(shadow_plan)["x-ratelimit-mode"] == "shadow"
    shadow_key = await limiter(usage).check("acc_2", "key_2", "pro", None, shadow=True)
    assert shadow_key.mode == "shadow"
    assert [item.shadow for item in usage.asked] == [False, True]  # the plan's: usage knows


async def test_failing_open_in_shadow_mode_admits_what_the_local_limiter_refuses() -> None:
    edge = limiter(Away())
    verdicts = [await edge.check("acc_1", "key_1", "trial", None) for _ in range(61)]
    assert all(v.decision is not None and v.decision.admitted for v in verdicts)
    assert verdicts[-1].decision is not None and verdicts[-1].decision.shadow
    assert {v.mode for v in verdicts} == {"fail-open"}


async def test_a_lease_admits_nothing_once_its_plan_has_a_second_or_a_day(tmp_path: Path) -> None:
    plans = tmp_path / "plans.toml"
    plans.write_text("[plans.enterprise]\nper_minute = 6000\n")
    table = PlanTable(str(plans))
    batcher: DecisionBatcher = Usage(Decision(True, 6000, 5999, int(T0) + 60, lease=32))  # type: ignore[assignment]
    edge = RateLimiter(batcher, table, True, 32, clock=lambda: T0)
    await edge.check("acc_1", "key_1", "enterprise", None)
    assert edge.leased("acc_1", "key_1", "enterprise", None) is not None  # from the lease
    plans.write_text("[plans.enterprise]\nper_minute = 6000\nper_day = 100000\n")
    assert table.reload()
    assert edge.leased("acc_1", "key_1", "enterprise", None) is None  # decided: every window
