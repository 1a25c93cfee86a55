"""Budgets of attempts (sign-ups, sign-ins) per client address and for the whole edge: a
refusal says which, with Retry-After and a stable code."""

from __future__ import annotations

import pytest

from aitbc_contracts.messages import Code
from aitbc_gate.errors import ApiError
from aitbc_gate.throttle import AttemptBudget

HOUR = 3600.0
T0 = 1_000_000 * HOUR  # the start of an hour (and of a minute)


def refusal(budget: AttemptBudget, address: str, now: float) -> ApiError:
    with pytest.raises(ApiError) as refused:
        budget.take(address, now)
    return refused.value


def test_an_address_has_its_budget_per_window_and_everyone_theirs_per_minute() -> None:
    signups = AttemptBudget("sign-up", Code.TOO_MANY_SIGNUPS, 2, HOUR, overall=3)
    signups.take("203.0.113.7", T0)
    signups.take("203.0.113.7", T0 + 1)
    again = refusal(signups, "203.0.113.7", T0 + 10)
    assert (again.status, again.code) == (429, "TOO_MANY_SIGNUPS")
    assert again.headers["Retry-After"] == str(int(HOUR - 10))  # until the hour ends
    assert "from this address" in again.message

    signups.take("198.51.100.1", T0 + 20)  # the third of the minute, from anyone
    busy = refusal(signups, "198.51.100.2", T0 + 30)
    assert busy.code == "TOO_MANY_SIGNUPS" and busy.headers["Retry-After"] == "30"
    assert "right now" in busy.message

    signups.take("198.51.100.2", T0 + 60)  # a new minute for everyone
    assert refusal(signups, "203.0.113.7", T0 + 60).code == "TOO_MANY_SIGNUPS"  # not its hour
    signups.take("203.0.113.7", T0 + HOUR)


def test_a_refused_attempt_is_not_counted() -> None:
    sign_ins = AttemptBudget("sign-in", Code.TOO_MANY_SIGN_INS, 1, 60, overall=100)
    sign_ins.take("a", T0)
    for _ in range(50):
        assert refusal(sign_ins, "a", T0 + 1).code == "TOO_MANY_SIGN_INS"
    for address in "bcdefgh":  # the refusals above spent nothing of everyone's budget
        sign_ins.take(address, T0 + 2)
