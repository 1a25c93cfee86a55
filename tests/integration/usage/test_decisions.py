"""Decisions over real NATS: batching, partition subjects, exact counts, restored counts."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from aitbc_contracts import messages as m
from aitbc_contracts.subjects import (
    KEYS_OPERATOR_COMMANDS,
    USAGE_PARTITIONS,
    USAGE_QUERY,
    partition_of,
    usage_decide_subject,
)
from aitbc_contracts.usage import Decide, DecideBatch, Decision, decision_batch_decoder
from aitbc_gate.decisions import DecisionBatcher, UsageUnavailable
from aitbc_usage.handlers import UNKNOWN_ACCOUNT
from tests.integration.usage.conftest import System, within_one_minute
from tests.scrape import registered

BATCHES = "aitbc_bus_batch_size_count", "aitbc_bus_batch_size_sum"  # the edge's, per batch


async def test_concurrent_decisions_share_round_trips_and_are_exact(system: System) -> None:
    async def burst() -> tuple[list[Decision], list[float]]:
        account = await system.create_account()
        async with system.usage():
            # The batches the edge sent, as its own metrics count them (one per request).
            before = [registered(name, batch="decisions") for name in BATCHES]
            batcher = DecisionBatcher(system.edge, timeout=5)
            decisions = await asyncio.gather(
                *(batcher.decide(Decide(account, "k1")) for _ in range(500))
            )
            after = [registered(name, batch="decisions") for name in BATCHES]
        return decisions, [a - b for a, b in zip(after, before, strict=True)]

    decisions, seen = await within_one_minute(burst)
    assert sum(d.admitted for d in decisions) == 60
    assert sorted(d.remaining for d in decisions if d.admitted) == list(range(60))
    requests, items = seen
    assert items == 500
    assert requests < 50, f"{requests} requests for 500 decisions: not batched"


async def test_a_lone_decision_goes_out_at_once(system: System) -> None:
    account = await system.create_account()
    async with system.usage():
        batcher = DecisionBatcher(system.edge, timeout=5)
        await batcher.decide(Decide(account, "k1"))  # warm: the plan is looked up once
        before = [registered(name, batch="decisions") for name in BATCHES]
        # Alone, it is not held back for company: a batcher that waited for a batch to fill
        # would run into this bound (wide: speed is the benchmarks' to measure).
        async with asyncio.timeout(2):
            decision = await batcher.decide(Decide(account, "k1"))
        after = [registered(name, batch="decisions") for name in BATCHES]
        assert decision.admitted and decision.remaining == 58
        assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1]  # one batch of one


async def test_requests_go_to_the_partition_that_owns_the_account(system: System) -> None:
    """Each partition's holder answers its own subject only and counts what it decided under
    its partition: a request sent to another partition's subject would be counted there."""
    accounts = [await system.create_account() for _ in range(6)]

    def decided() -> list[float]:
        return [
            registered("aitbc_usage_decisions_total", partition=str(p), outcome="admitted")
            for p in range(USAGE_PARTITIONS)
        ]

    async with system.usage():
        batcher = DecisionBatcher(system.edge, timeout=5)
        for account in accounts:
            before = decided()
            assert (await batcher.decide(Decide(account, "k"))).admitted
            after = decided()
            rose = [p for p in range(USAGE_PARTITIONS) if after[p] != before[p]]
            assert rose == [partition_of(account)]
            assert after[partition_of(account)] - before[partition_of(account)] == 1


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


def strangers_on(partition: int, count: int) -> list[str]:
    """Account ids no keys service knows, all counted in `partition`."""
    found: list[str] = []
    while len(found) < count:
        account = "acc_" + uuid.uuid4().hex[:16]
        if partition_of(account) == partition:
            found.append(account)
    return found


async def test_a_batch_of_unknown_accounts_holds_up_no_other_decision(system: System) -> None:
    """The plan of an account the usage service has not seen is asked of the keys service. A
    batch of thousands of made-up accounts (one message from whoever holds the edge's
    credentials) once had them asked one after the other, on the partition's only
    subscription: every other decision of the partition waited seconds, past every edge's
    timeout, for as long as such batches kept coming."""
    account = await system.create_account()
    partition = partition_of(account)
    async with system.usage():
        batcher = DecisionBatcher(system.edge, timeout=0.5)  # an edge's USAGE_TIMEOUT
        assert (await batcher.decide(Decide(account, "k"))).admitted  # its plan is known now
        strangers = DecideBatch([Decide(x, "k") for x in strangers_on(partition, 3000)])
        hostile = asyncio.ensure_future(
            system.edge.request(
                usage_decide_subject(partition), msgspec.json.encode(strangers), timeout=60
            )
        )
        await asyncio.sleep(0.05)  # sent: the usage service is looking its accounts up
        assert (await batcher.decide(Decide(account, "k"))).admitted
        assert not hostile.done(), "too few strangers to keep the keys service busy"
        refused = decision_batch_decoder.decode((await hostile).data).decisions
        assert {(d.admitted, d.code) for d in refused} == {(False, UNKNOWN_ACCOUNT)}


async def test_overlong_ids_are_refused_and_cannot_stop_the_counts_being_saved(
    system: System,
) -> None:
    """An id of a decision is counted, under its key's own limit, and saved in the partition's
    snapshot. Made-up key ids of 200 kB (from whoever holds the edge's credentials) once made
    the snapshot larger than a NATS message: no count of that partition (nor of the others
    saved after it) was saved for the rest of the minute, so a restart forgot them."""
    batcher = DecisionBatcher(system.edge, timeout=5)

    async def restart() -> tuple[list[Decision], list[Decision], list[bytes]]:
        hostile = await system.create_account()
        account = await system.create_account()
        while partition_of(account) != partition_of(hostile):
            account = await system.create_account()
        subject = usage_decide_subject(partition_of(hostile))
        refusals = []
        async with system.usage():
            for n in range(2):
                long_ids = [f"key_{n}_{i}_" + "x" * 200_000 for i in range(4)]
                batch = DecideBatch([Decide(hostile, x, key_limit=5) for x in long_ids])
                reply = await system.edge.request(subject, msgspec.json.encode(batch), timeout=5)
                refusals.append(reply.data)
            first = await asyncio.gather(*(batcher.decide(Decide(account, "k")) for _ in range(40)))
            await asyncio.sleep(0.3)  # a few snapshot intervals
        async with system.usage():
            again = await asyncio.gather(*(batcher.decide(Decide(account, "k")) for _ in range(40)))
        return first, again, refusals

    first, again, refusals = await within_one_minute(restart)
    assert sum(d.admitted for d in first) == 40
    assert sum(d.admitted for d in again) == 20  # the 40 admitted before were saved
    for data in refusals:
        assert msgspec.json.decode(data, type=m.Rejected).code == m.Code.VALIDATION_ERROR
