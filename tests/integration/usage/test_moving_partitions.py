"""Usage processes share the partitions by leases: a second one takes its share while decisions
go on, a leaving one hands its partitions back with their counts, and an edge ignores an answer
from a holder that was deposed."""

from __future__ import annotations

import asyncio

import msgspec
import nats
from nats.aio.msg import Msg

from aitbc_contracts.subjects import partition_of, usage_decide_subject
from aitbc_contracts.usage import Decide, Decision, DecisionBatch
from aitbc_gate.decisions import DecisionBatcher
from aitbc_runtime.lease_view import rendezvous
from aitbc_usage.main import Service
from aitbc_usage.partitions import share
from tests.integration.usage.conftest import System, within_one_minute

LEASE = 0.6  # seconds: short, so that the tests wait little


async def until(condition: object, within: float = 10) -> None:
    async with asyncio.timeout(within):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)


def held(*services: Service) -> list[int]:
    return sorted(p for service in services for p in service.deciding.windows)


async def test_a_joining_process_takes_its_share_and_the_counts_stay_exact(system: System) -> None:
    accounts = [await system.create_account() for _ in range(4)]

    async def join_midway() -> tuple[list[int], list[int]]:
        batcher = DecisionBatcher(system.edge, timeout=5)
        admitted = dict.fromkeys(accounts, 0)

        async def burst(n: int) -> None:
            for account in accounts:
                decisions = await asyncio.gather(
                    *(batcher.decide(Decide(account, "k")) for _ in range(n))
                )
                admitted[account] += sum(d.admitted for d in decisions)

        async with system.usage(lease_seconds=LEASE) as one:
            await burst(35)
            async with system.usage(lease_seconds=LEASE) as two:
                homes = [rendezvous(share(p), [member_of(one), member_of(two)]) for p in range(16)]
                await until(
                    lambda: held(two) == [p for p, h in enumerate(homes) if h == member_of(two)]
                )
                assert held(one, two) == list(range(16)), "every partition held, once"
                await burst(35)
            await until(lambda: held(one) == list(range(16)))  # handed back on leaving
            await burst(5)
        return [admitted[a] for a in accounts], [partition_of(a) for a in accounts]

    counts, _ = await within_one_minute(join_midway)
    assert counts == [60] * len(accounts), "a handover neither forgets nor double-counts"


def member_of(service: Service) -> str:
    return service.partitions.ownership.member


async def test_an_answer_from_a_deposed_holder_is_ignored(system: System) -> None:
    account = await system.create_account()
    partition = partition_of(account)
    async with system.usage(lease_seconds=LEASE) as service:
        batcher = DecisionBatcher(system.edge, timeout=1)
        assert (await batcher.decide(Decide(account, "k"))).admitted
        epoch = service.deciding.epochs[partition]
        assert batcher.epochs[partition] == epoch > 0
    # The holder is gone; an impostor with an older epoch answers on its subject (a usage
    # process that was frozen and wakes up).
    forged = msgspec.json.encode(
        DecisionBatch([Decision(admitted=True, limit=60, remaining=59, reset=0)], epoch - 1)
    )

    async def impostor(msg: Msg) -> None:
        if not answered:  # once: it woke up, answered what it had queued, and found out
            answered.append(msg)
            await msg.respond(forged)

    answered: list[Msg] = []
    frozen = await nats.connect(**system.nats.options("usage"))
    await frozen.subscribe(usage_decide_subject(partition), cb=impostor)
    await frozen.flush()
    try:
        async with system.usage(lease_seconds=LEASE):  # a new holder, with a higher epoch
            decision = await batcher.decide(Decide(account, "k"))
            assert decision.remaining == 58, "the new holder's answer, not the impostor's"
            assert batcher.epochs[partition] > epoch
    finally:
        await frozen.close()
    assert answered, "the impostor was asked: the test would prove nothing"
