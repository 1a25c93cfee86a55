"""A plan's second and day over real NATS, between edges' rate limiters and the usage service:
exact across edges and across a restart; shadow mode; the plans file reloaded while it runs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from aitbc_contracts.plans import DAY, PlanTable
from aitbc_gate.decisions import DecisionBatcher
from aitbc_gate.limits import RateLimiter, Verdict
from aitbc_usage.metrics import SHADOW_REFUSALS
from tests.integration.usage.conftest import System

PLANS = """
[plans.free]
per_minute = 60
burst_per_second = 10

[plans.pro]
per_minute = 600
per_day = 25

[plans.enterprise]
per_minute = 6000
burst_per_second = 4
shadow = true
"""


@pytest.fixture
def plans_file(tmp_path: Path) -> Path:
    path = tmp_path / "plans.toml"
    path.write_text(PLANS)
    return path


def limiter(system: System, plans_file: Path) -> RateLimiter:
    """An edge's rate limiter: a batcher of its own, the plans from the same file."""
    return RateLimiter(DecisionBatcher(system.edge, timeout=5), PlanTable(str(plans_file)), False)


async def burst(limiter: RateLimiter, account: str, n: int, plan: str) -> list[Verdict]:
    """`n` requests in one turn of the loop."""
    return list(
        await asyncio.gather(*(limiter.check(account, "key_1", plan, None) for _ in range(n)))
    )


async def test_a_burst_limit_holds_exactly_across_two_edges(
    system: System, plans_file: Path
) -> None:
    account = await system.create_account("free")
    async with system.usage(plans_file=str(plans_file)):
        one, two = limiter(system, plans_file), limiter(system, plans_file)
        verdicts = [v for pair in await asyncio.gather(
            burst(one, account, 15, "free"), burst(two, account, 15, "free")
        ) for v in pair]  # fmt: skip
    decisions = [v.decision for v in verdicts if v.decision is not None]
    assert len(decisions) == 30
    # Each decision reports the second it was counted in (its reset), the closest window.
    admitted = Counter(d.reset for d in decisions if d.admitted)
    refused = Counter(d.reset for d in decisions if not d.admitted)
    assert all(d.window == 1 for d in decisions)
    assert all(n <= 10 for n in admitted.values()), admitted
    assert refused and all(admitted[second] == 10 for second in refused), (admitted, refused)


async def test_a_daily_quota_holds_across_two_edges_and_a_restart(
    system: System, plans_file: Path
) -> None:
    account = await system.create_account("pro")
    async with system.usage(plans_file=str(plans_file)):
        one, two = limiter(system, plans_file), limiter(system, plans_file)
        first = await burst(one, account, 10, "pro") + await burst(two, account, 10, "pro")
    assert sum(v.decision is not None and v.decision.admitted for v in first) == 20
    async with system.usage(plans_file=str(plans_file)):  # restarted: the day's 20 are kept
        again = await burst(limiter(system, plans_file), account, 10, "pro")
    decisions = [v.decision for v in again if v.decision is not None]
    assert sum(d.admitted for d in decisions) == 5
    refusals = [d for d in decisions if not d.admitted]
    assert {(d.window, d.limit, d.remaining) for d in refusals} == {(DAY, 25, 0)}


async def test_shadow_mode_admits_everything_and_reports_the_would_be_refusals(
    system: System, plans_file: Path
) -> None:
    account = await system.create_account("enterprise")
    seen = SHADOW_REFUSALS[1]._value.get()
    async with system.usage(plans_file=str(plans_file)):
        verdicts = await burst(limiter(system, plans_file), account, 12, "enterprise")
    decisions = [v.decision for v in verdicts if v.decision is not None]
    assert len(decisions) == 12 and all(d.admitted for d in decisions)
    assert {v.mode for v in verdicts} == {"shadow"}
    would_be = Counter(d.reset for d in decisions if d.shadow)
    counted = Counter(d.reset for d in decisions if not d.shadow)
    assert would_be and all(counted[second] == 4 for second in would_be)
    assert SHADOW_REFUSALS[1]._value.get() == seen + sum(would_be.values())


async def test_the_plans_file_reloads_on_sighup_and_a_bad_one_keeps_the_plans(
    system: System, plans_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    account = await system.create_account("pro")
    async with system.usage(plans_file=str(plans_file)) as usage:
        edge_limiter = limiter(system, plans_file)
        before = await edge_limiter.check(account, "key_1", "pro", None)
        assert before.decision is not None and before.decision.limit == 25  # the day's, closest
        plans_file.write_text(PLANS.replace("per_day = 25", "per_day = 3"))
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.1)
        assert usage.deciding.table.plans["pro"].per_day == 3
        after = await burst(edge_limiter, account, 3, "pro")
        assert [v.decision.admitted for v in after if v.decision] == [True, True, False]
        plans_file.write_text("[plans.pro]\nper_minute = 'lots'\n")
        with caplog.at_level(logging.ERROR, "aitbc.plans"):
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.sleep(0.1)
        assert f"{plans_file}: plan 'pro': per_minute must be a whole number" in caplog.text
        assert usage.deciding.table.plans["pro"].per_day == 3  # the plans as they were
        still = await edge_limiter.check(account, "key_1", "pro", None)
        assert still.decision is not None and not still.decision.admitted


async def test_a_daily_quota_moves_with_its_partition_to_another_process(
    system: System, plans_file: Path
) -> None:
    """Handed over while both run: the joining process takes the partition with its day."""
    account = await system.create_account("pro")
    settings = {"plans_file": str(plans_file), "lease_seconds": 0.6}
    edge_limiter = limiter(system, plans_file)
    async with system.usage(**settings) as one:
        first = await burst(edge_limiter, account, 20, "pro")
        async with system.usage(**settings) as two:
            async with asyncio.timeout(10):  # the first hands every partition to the second
                await one.partitions.stop()
                while len(two.deciding.windows) < 16:
                    await asyncio.sleep(0.02)
            again = await burst(edge_limiter, account, 10, "pro")
    assert sum(v.decision is not None and v.decision.admitted for v in first) == 20
    assert sum(v.decision is not None and v.decision.admitted for v in again) == 5
