"""The edge's decision batcher across partition moves: it asks again while no process holds the
partition or the one asked says it moved, and ignores an answer whose epoch is below one it has
seen (a deposed holder's)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import pytest
from nats.errors import NoRespondersError

from aitbc_contracts.messages import Rejected
from aitbc_contracts.subjects import partition_of
from aitbc_contracts.usage import PARTITION_MOVED, Decide, Decision, DecisionBatch
from aitbc_gate.decisions import DecisionBatcher, UsageUnavailable


@dataclass
class Reply:
    data: bytes


def answer(remaining: int, epoch: int) -> Reply:
    return Reply(msgspec.json.encode(DecisionBatch([Decision(True, 60, remaining, 0)], epoch)))


class ScriptedBus:
    """Answers each request with the next of `replies` (an exception is raised)."""

    def __init__(self, *replies: Reply | Exception) -> None:
        self.replies = list(replies)
        self.asked = 0

    async def request(
        self, subject: str, payload: bytes, timeout: float, headers: object = None
    ) -> Reply:
        self.asked += 1
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


ACCOUNT = "acc_0123456789abcdef"


async def test_an_answer_below_the_highest_epoch_seen_is_ignored_and_asked_again() -> None:
    bus = ScriptedBus(answer(59, epoch=7), answer(10, epoch=5), answer(58, epoch=9))
    batcher = DecisionBatcher(bus, timeout=5)  # type: ignore[arg-type]
    assert (await batcher.decide(Decide(ACCOUNT, "k"))).remaining == 59
    assert (await batcher.decide(Decide(ACCOUNT, "k"))).remaining == 58  # not the deposed 10
    assert bus.asked == 3 and batcher.epochs[partition_of(ACCOUNT)] == 9


async def test_no_holder_or_a_moved_partition_is_asked_again_until_one_answers() -> None:
    moved = Reply(msgspec.json.encode(Rejected(PARTITION_MOVED, "moved")))
    bus = ScriptedBus(NoRespondersError(), moved, answer(59, epoch=3))
    batcher = DecisionBatcher(bus, timeout=5)  # type: ignore[arg-type]
    assert (await batcher.decide(Decide(ACCOUNT, "k"))).remaining == 59
    assert bus.asked == 3


async def test_without_a_holder_until_the_timeout_the_usage_service_is_unavailable() -> None:
    bus = ScriptedBus(*[NoRespondersError() for _ in range(100)])
    batcher = DecisionBatcher(bus, timeout=0.2)  # type: ignore[arg-type]
    with pytest.raises(UsageUnavailable, match="no holder"):
        await batcher.decide(Decide(ACCOUNT, "k"))


async def test_another_rejection_is_not_asked_again() -> None:
    bus = ScriptedBus(Reply(msgspec.json.encode(Rejected("VALIDATION_ERROR", "bad"))))
    batcher = DecisionBatcher(bus, timeout=5)  # type: ignore[arg-type]
    with pytest.raises(UsageUnavailable):
        await batcher.decide(Decide(ACCOUNT, "k"))
    assert bus.asked == 1


async def test_a_partition_long_without_a_holder_is_not_waited_for_again() -> None:
    bus = ScriptedBus(*[NoRespondersError() for _ in range(100)], answer(59, epoch=4))
    batcher = DecisionBatcher(bus, timeout=5)  # type: ignore[arg-type]
    with pytest.raises(UsageUnavailable):  # waited out a handover's time, then gave up
        await batcher.decide(Decide(ACCOUNT, "k"))
    asked = bus.asked
    with pytest.raises(UsageUnavailable):  # the holder died: the fail policy, at once
        await batcher.decide(Decide(ACCOUNT, "k"))
    assert bus.asked == asked + 1
    bus.replies = [answer(59, epoch=4)]
    assert (await batcher.decide(Decide(ACCOUNT, "k"))).remaining == 59  # a holder again
