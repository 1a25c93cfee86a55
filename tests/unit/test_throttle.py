"""Budgets of attempts (sign-ups, sign-ins) per client address and for the whole system, of
which each edge admits its share: a refusal says which, with Retry-After and a stable code."""

from __future__ import annotations

import pytest

from aitbc_contracts.messages import Code
from aitbc_gate.errors import ApiError
from aitbc_gate.throttle import AttemptBudget, edge_share

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


def test_an_edge_admits_its_share_of_the_overall_budget_and_together_no_more() -> None:
    assert [edge_share(20, n) for n in (1, 2, 3, 7, 20, 21)] == [20, 10, 6, 2, 1, 1]
    assert edge_share(20, 0) == 20  # never heard itself yet: alone
    for budget in range(1, 130):
        for edges in range(1, budget + 1):  # as many edges as the budget: one each
            assert 1 <= edges * edge_share(budget, edges) <= budget

    alive = [2]
    edges = [
        AttemptBudget("sign-in", Code.TOO_MANY_SIGN_INS, 100, 60, 7, edges=lambda: alive[0])
        for _ in range(2)
    ]
    admitted = 0
    for n in range(20):
        try:
            edges[n % 2].take(f"198.51.100.{n}", T0 + n)
            admitted += 1
        except ApiError as refused:
            assert "right now" in refused.message
    assert admitted == 6  # 3 each: 7 over 2 edges, rounded down
    alive[0] = 1  # the other edge is gone: this one admits the rest of the minute's budget
    for n in range(4):
        edges[0].take(f"192.0.2.{n}", T0 + 30)
    assert refusal(edges[0], "192.0.2.9", T0 + 31).code == "TOO_MANY_SIGN_INS"
