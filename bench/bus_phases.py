"""Bus phases: usage memory, auth checks and decisions per second against the bare responder."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from statistics import median
from typing import Any

import nats

from aitbc_contracts.keyformat import hash_key
from aitbc_contracts.subjects import KEYS_CHECK, usage_decide_subject
from bench import bus_load
from bench.common import against_ceiling, rates, say
from bench.cpu import CpuMeter
from bench.null_responder import CHECK_SUBJECT, DECIDE_PREFIX
from bench.stack import until_serving
from bench.state import Bench

CHECK_BATCH_SIZES = (1, 10, 100)  # hashes per CheckKeys in the auth phase, quick or not
CHECK_HEADLINE_BATCH = 100  # the size the target row judges


async def usage_memory(b: Bench) -> None:
    assert b.seeded is not None
    usage = b.stack.procs["usage"]
    await asyncio.sleep(1.0)
    b.usage_rss.append(usage.rss_kib())  # plans of every account learned from events
    accounts = [a.account_id for a in b.seeded.bulk]
    work = bus_load.decide_work(usage_decide_subject, accounts, 500)
    async with b.bus() as nc:
        outcome = await bus_load.decide_all(nc, work, 16)
    await asyncio.sleep(1.5)  # a snapshot or two
    b.usage_rss.append(usage.rss_kib())
    if outcome.get("admitted", 0) < len(accounts):
        raise RuntimeError(f"decisions for the seeded accounts: {outcome}")
    r0, r1, r2 = b.usage_rss
    n = len(accounts)
    b.results["usage_memory"] = {
        "accounts": n,
        "rss_kib": [r0, r1, r2],
        "bytes_per_account": (r2 - r0) * 1024 / n,
        "plan_book_bytes_per_account": (r1 - r0) * 1024 / n,
        "counters_bytes_per_account": (r2 - r1) * 1024 / n,
        "decisions": outcome,
    }
    say(f"usage memory: {(r2 - r0) * 1024 / n:.0f} B/account over {n:,} accounts")


async def _alternate(b: Bench, runs: dict[str, Any], rounds: int) -> dict[str, list[dict]]:
    """Each named run once per round, in order, round after round."""
    out: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            out[name].append(await run())
    return out


async def auth_checks(b: Bench, nc: nats.NATS) -> None:
    """CheckKeys of 1, 10 and 100 hashes: the edge sends its cache misses in batches as
    large as the burst that missed (aitbc_gate.batching), so each size is a load it
    makes."""
    assert b.seeded is not None
    c = b.config
    hashes = [hash_key(a.master_key) for a in b.seeded.bulk]
    concurrency = 128
    cpu_pids = {"keys": b.stack.procs["keys"].pid, "nats-server": b._nats_pid()}
    say(f"auth checks: {c.bus_rounds} rounds x {c.bus_seconds}s, {len(hashes):,} keys")
    cursor: dict[str, int] = {}  # every run asks keys the runs before did not

    def run(name: str, work: list) -> Any:
        async def go() -> dict:
            with CpuMeter(cpu_pids) as meter:
                result = await bus_load.auth_checks(
                    nc, work, c.bus_seconds, concurrency, cursor.get(name, 0)
                )
            cursor[name] = int(result["next"])
            result["cpu_seconds"] = meter.seconds
            result["others_cores"] = meter.others / meter.wall
            return result

        return go

    by_batch = {}
    for batch in CHECK_BATCH_SIZES:
        keys_work = bus_load.check_work(KEYS_CHECK, hashes, batch)
        null_work = bus_load.check_work(CHECK_SUBJECT, hashes, batch)
        await until_serving(b.null)
        for work in (keys_work, null_work):
            warm = await bus_load.auth_checks(nc, work, 1.0, concurrency, len(work) // 2)
            if warm["bad"] or warm["errors"]:
                raise RuntimeError(f"auth checks refused or failed: {warm}")
        metered = await _alternate(
            b,
            {
                "ceiling": run(f"ceiling-{batch}", null_work),
                "keys": run(f"keys-{batch}", keys_work),
            },
            c.bus_rounds,
        )
        by_batch[batch] = against_ceiling(metered, "keys")
        say(f"auth checks, batches of {batch}: {rates(by_batch[batch])}")
    headline = by_batch[CHECK_HEADLINE_BATCH]
    b.results["auth_checks"] = {
        "distinct_keys": len(hashes),
        "concurrency": concurrency,
        "headline_batch": CHECK_HEADLINE_BATCH,
        "per_second": headline["per_second"],
        "ceiling_per_second": headline["ceiling_per_second"],
        "ratio_to_ceiling": headline["ratio_to_ceiling"],
        "by_batch": by_batch,
    }


async def decisions(b: Bench, nc: nats.NATS) -> None:
    assert b.seeded is not None
    c = b.config
    accounts = [a.account_id for a in b.seeded.bulk[: c.decision_accounts]]
    concurrency = 32
    cpu_pids = {"usage": b.stack.procs["usage"].pid, "nats-server": b._nats_pid()}
    by_batch = {}
    await until_serving(b.null)  # the ceiling's responder
    for batch in c.batch_sizes:
        usage_work = bus_load.decide_work(usage_decide_subject, accounts, batch)
        null_work = bus_load.decide_work(lambda p: f"{DECIDE_PREFIX}.{p}", accounts, batch)
        check = await bus_load.decisions(nc, usage_work, 1.0, concurrency, verify=True)
        if check["bad"] or check["errors"]:
            raise RuntimeError(f"usage refused decisions: {check}")
        await bus_load.decisions(nc, null_work, 0.5, concurrency)

        def run(work: list) -> Any:
            return _metered(nc, work, c.bus_seconds, concurrency, cpu_pids)

        metered = await _alternate(
            b, {"ceiling": run(null_work), "usage": run(usage_work)}, c.bus_rounds
        )
        by_batch[batch] = against_ceiling(metered, "usage")
        say(f"decisions, batches of {batch}: {rates(by_batch[batch])}")
    headline = 100 if 100 in by_batch else max(by_batch)
    b.results["decisions"] = {
        "accounts": len(accounts),
        "concurrency": concurrency,
        "headline_batch": headline,
        "per_second": by_batch[headline]["per_second"],
        "by_batch": by_batch,
        "windowed": await _windowed_decisions(b, nc, accounts, concurrency, cpu_pids),
    }


async def _windowed_decisions(
    b: Bench, nc: nats.NATS, accounts: list[str], concurrency: int, cpu_pids: dict[str, int]
) -> dict[str, Any]:
    """What a plan with a second and a day costs (every window counted, no lease): decisions
    of accounts on such a plan alternating with decisions of accounts on a minute alone, in
    batches of 100."""
    assert b.seeded is not None
    c = b.config
    on_pro = [a.account_id for a in b.seeded.windowed]
    minute_work = bus_load.decide_work(usage_decide_subject, accounts[: len(on_pro)], 100)
    windowed_work = bus_load.decide_work(usage_decide_subject, on_pro, 100)
    check = await bus_load.decisions(nc, windowed_work, 1.0, concurrency, verify=True)
    if check["bad"] or check["errors"]:
        raise RuntimeError(f"usage refused decisions of the windowed plan: {check}")

    def run(work: list) -> Any:
        return _metered(nc, work, c.bus_seconds, concurrency, cpu_pids)

    metered = await _alternate(
        b, {"minute": run(minute_work), "windowed": run(windowed_work)}, c.bus_rounds
    )
    minute = median([r["per_second"] for r in metered["minute"]])
    windowed = median([r["per_second"] for r in metered["windowed"]])
    say(f"decisions of a plan with a second and a day: {windowed:,.0f}/s ({minute:,.0f}/s minute)")
    return {
        "accounts": len(on_pro),
        "per_second": windowed,
        "minute_per_second": minute,
        "ratio_to_minute": windowed / minute,
        "runs": metered,
    }


def _metered(
    nc: nats.NATS, work: list, seconds: float, concurrency: int, cpu_pids: dict[str, int]
) -> Callable[[], Awaitable[dict]]:
    """One run of decisions of `work`, with the CPU the stack's processes spent on it."""

    async def go() -> dict:
        with CpuMeter(cpu_pids) as meter:
            result = await bus_load.decisions(nc, work, seconds, concurrency)
        result["cpu_seconds"] = meter.seconds
        result["others_cores"] = meter.others / meter.wall
        return result

    return go
