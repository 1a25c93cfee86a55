"""What every fault scenario checks of the answers its clients got and of what the system
recorded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from tests.chaos.load import Answer, check_usage
from tests.chaos.report import Result
from tests.e2e.stack import Stack


def outcomes(answers: list[Answer]) -> str:
    return ", ".join(f"{k} {n}" for k, n in Counter(a.outcome for a in answers).most_common())


def no_server_errors(result: Result, answers: list[Answer], allowed: set[str]) -> None:
    """5xx only with the error body and one of the codes this fault may give."""
    wrong = [a for a in answers if a.status >= 500 and a.code not in allowed]
    result.expect(not wrong, f"unexpected server errors: {outcomes(wrong)}")
    silent = [a for a in answers if a.status == 0]
    result.expect(not silent, f"{len(silent)} requests got no HTTP answer: {silent[:1]}")


def first_after(
    answers: Callable[[], list[Answer]], since: float, ok: Callable[[Answer], bool]
) -> Callable[[], bool]:
    return lambda: any(a.started >= since and ok(a) for a in answers())


def record_usage(
    result: Result, stack: Stack, accounts: dict[str, list[str]], answers: list[Answer]
) -> None:
    usage = check_usage(stack.nats.access("auditor"), accounts, answers)
    result.usage_lost, result.usage_duplicated = usage.lost, usage.duplicated
    if usage.detail:
        result.notes.append(usage.detail)
