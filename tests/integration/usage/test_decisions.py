"""Decisions over real NATS: batching, partition subjects, exact counts, restored counts."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from nats.aio.msg import Msg

from aitbc_contracts import messages as m
from aitbc_contracts.subjects import (
    KEYS_OPERATOR_COMMANDS,
    USAGE_DECIDE_PREFIX,
    USAGE_QUERY,
    partition_of,
    usage_decide_subject,
)
from aitbc_contracts.usage import Decide, DecideBatch, Decision
from aitbc_gate.decisions import DecisionBatcher, UsageUnavailable
from tests.integration.usage.conftest import System, within_one_minute
from tests.scrape import registered


async def test_concurrent_decisions_share_round_trips_and_are_exact(system: System) -> None:
    async def burst() -> tuple[list[Decision], list[int]]:
        account = await system.create_account()
        seen: list[int] = []

        async def count(msg: Msg) -> None:
            seen.append(len(msgspec.json.decode(msg.data)["items"]))

        async with system.usage():
            # A spy on the usage service's subjects: only an operator may listen there.
            monitor = await system.operator.subscribe(f"{USAGE_DECIDE_PREFIX}.*", cb=count)
            await system.operator.flush()  # the spy is in place before the first request
            batcher = DecisionBatcher(system.edge, timeout=5)
            decisions = await asyncio.gather(
                *(batcher.decide(Decide(account, "k1")) for _ in range(500))
            )
            async with asyncio.timeout(5):  # the spy's copies may come after the replies
                while sum(seen) < 500:
                    await asyncio.sleep(0.01)
        await monitor.unsubscribe()
        return decisions, seen

    decisions, seen = await within_one_minute(burst)
    assert sum(d.admitted for d in decisions) == 60
    assert sorted(d.remaining for d in decisions if d.admitted) == list(range(60))
    assert sum(seen) == 500
    assert len(seen) < 50, f"{len(seen)} requests for 500 decisions: not batched"


async def test_a_lone_decision_goes_out_at_once(system: System) -> None:
    account = await system.create_account()
    batches = "aitbc_bus_batch_size_count", "aitbc_bus_batch_size_sum"
    async with system.usage():
        batcher = DecisionBatcher(system.edge, timeout=5)
        await batcher.decide(Decide(account, "k1"))  # warm: the plan is looked up once
        before = [registered(name, batch="decisions") for name in batches]
        # Alone, it is not held back for company: a batcher that waited for a batch to fill
        # would run into this bound (wide: speed is the benchmarks' to measure).
        async with asyncio.timeout(2):
            decision = await batcher.decide(Decide(account, "k1"))
        after = [registered(name, batch="decisions") for name in batches]
        assert decision.admitted and decision.remaining == 58
        assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1]  # one batch of one


async def test_requests_go_to_the_partition_that_owns_the_account(system: System) -> None:
    accounts = [await system.create_account() for _ in range(6)]
    subjects: list[str] = []

    async def note(msg: Msg) -> None:
        subjects.append(msg.subject)

    async with system.usage():
        monitor = await system.operator.subscribe(f"{USAGE_DECIDE_PREFIX}.*", cb=note)
        await system.operator.flush()  # the spy is in place before the first request
        batcher = DecisionBatcher(system.edge, timeout=5)
        for account in accounts:
            await batcher.decide(Decide(account, "k"))
        # The monitor's copies may be dispatched after the replies, and on a loaded machine
        # well after: its connection's reader waits for the CPU like everything else.
        async with asyncio.timeout(20):
            while len(subjects) < len(accounts):
                await asyncio.sleep(0.01)
    await monitor.unsubscribe()
    assert subjects == [usage_decide_subject(partition_of(a)) for a in accounts]


async def test_a_process_owning_some_partitions_answers_only_for_them(system: System) -> None:
    account = await system.create_account()
    mine = partition_of(account)
    async with system.usage(partitions=(mine,)):
        batcher = DecisionBatcher(system.edge, timeout=1)
        assert (await batcher.decide(Decide(account, "k"))).admitted
        other = await system.create_account()
        while partition_of(other) == mine:
            other = await system.create_account()
        with pytest.raises(UsageUnavailable):  # nobody owns that partition: no responders
            await batcher.decide(Decide(other, "k"))


async def test_a_plan_change_takes_effect_on_the_next_decision(system: System) -> None:
    async def upgrade() -> tuple[list[Decision], Decision]:
        account = await system.create_account()
        async with system.usage():
            batcher = DecisionBatcher(system.edge, timeout=5)
            first = await asyncio.gather(*(batcher.decide(Decide(account, "k")) for _ in range(70)))
            await system.operator.request(
                KEYS_OPERATOR_COMMANDS,
                m.encoder.encode(m.SetPlan(account_id=account, plan="pro")),
                timeout=5,
            )
            for _ in range(100):  # the plan reaches the usage service by the key event stream
                decision = await batcher.decide(Decide(account, "k"))
                if decision.limit == 600:
                    break
                await asyncio.sleep(0.02)
        return first, decision

    first, decision = await within_one_minute(upgrade)
    assert sum(d.admitted for d in first) == 60
    assert decision.limit == 600 and decision.admitted and decision.remaining == 600 - 61


async def test_counts_survive_a_restart_within_the_minute(system: System) -> None:
    batcher = DecisionBatcher(system.edge, timeout=5)

    async def restart() -> tuple[list[Decision], list[Decision]]:
        account = await system.create_account()  # free: 60 a minute
        async with system.usage():
            first = await asyncio.gather(*(batcher.decide(Decide(account, "k")) for _ in range(40)))
            await asyncio.sleep(0.2)  # a snapshot interval or more
        async with system.usage():
            again = await asyncio.gather(*(batcher.decide(Decide(account, "k")) for _ in range(40)))
        return first, again

    first, again = await within_one_minute(restart)
    assert sum(d.admitted for d in first) == 40
    # The restarted process knew the 40 already admitted this minute: 20 were left, not 60.
    assert sum(d.admitted for d in again) == 20
    assert sorted(d.remaining for d in again if d.admitted) == list(range(20))


async def test_hostile_payloads_are_refused_and_the_service_stays_up(system: System) -> None:
    account = await system.create_account()
    async with system.usage():
        subject = usage_decide_subject(partition_of(account))
        for payload in [
            b"",
            b"null",
            b"{",
            b'{"items": "x"}',
            b'{"items": [["a", "b", -5]]}',
            b'{"items": [[1, 2, 3, 4, 5]]}',
            msgspec.json.encode(DecideBatch([Decide("acc_x", "k")] * 10_001)),
            b"\x00" * 1000,
        ]:
            reply = await system.edge.request(subject, payload, timeout=5)
            body = msgspec.json.decode(reply.data)
            assert body.get("type") == "rejected" or all(not d[0] for d in body["decisions"])
        for payload in [
            b"",
            b"{",
            b'{"command": "x"}',
            b'{"type": "usage_query"}',
            b'{"type": "usage_query", "account_id": 1, "start": 2, "end": 3}',
        ]:
            reply = await system.edge.request(USAGE_QUERY, payload, timeout=5)
            assert msgspec.json.decode(reply.data)["code"] == "VALIDATION_ERROR"
        batcher = DecisionBatcher(system.edge, timeout=5)
        assert (await batcher.decide(Decide(account, "k"))).admitted
