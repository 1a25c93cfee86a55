"""The rate-limit policies of a plan as the IETF draft's headers name them: the minute's under
the plan's name (or "key" where the key's own limit is lower), the second's as "<plan>-burst",
the day's as "<plan>-day"; made once per plan and key limit, kept until the plans change."""

from __future__ import annotations

from aitbc_contracts.plans import DAY, SECOND, Plan
from aitbc_contracts.usage import WINDOW_SECONDS, Decision


class Policies:
    """RateLimit-Policy's value (`header`), and each window's name by its seconds (`names`)."""

    __slots__ = ("header", "names")

    def __init__(self, minute_name: str, plan_name: str, plan: Plan, key_limit: int | None):
        minute = key_limit if minute_name == "key" and key_limit is not None else plan.per_minute
        items = [(minute_name, minute, WINDOW_SECONDS)]
        if plan.burst_per_second is not None:
            items.append((f"{plan_name}-burst", plan.burst_per_second, SECOND))
        if plan.per_day is not None:
            items.append((f"{plan_name}-day", plan.per_day, DAY))
        self.header = b", ".join(
            b'"%s";q=%d;w=%d' % (name.encode(), limit, seconds) for name, limit, seconds in items
        )
        self.names = {seconds: name.encode() for name, _, seconds in items}


def exceeded(decision: Decision) -> str:
    """A 429's message: the window that refused, and its limit."""
    if decision.window == DAY:
        return f"Daily quota of {decision.limit} requests exceeded"
    if decision.window == SECOND:
        return f"Rate limit of {decision.limit} requests per second exceeded"
    return f"Rate limit of {decision.limit} requests per minute exceeded"
