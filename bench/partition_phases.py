"""Usage partitions that move (docs/architecture.md, "Partitions that move"): decisions per
second and CPU per decision with one usage process and with two sharing the partitions, and the
time a partition goes unanswered when the process holding it is killed.

The second usage process is `usage2`, started and stopped by these phases only: every other
phase runs with one.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

from aitbc_contracts.subjects import USAGE_PARTITIONS, partition_of, usage_decide_subject
from aitbc_contracts.usage import Decide, DecideBatch, decision_batch_decoder
from aitbc_infra.processes import ChildProcess as Proc
from aitbc_runtime.process import start_held
from aitbc_usage.settings import Settings as UsageSettings
from bench import bus_load, leases
from bench.common import median, percentile, say
from bench.cpu import CpuMeter
from bench.state import Bench

SECOND = "usage2"
BATCH = 100  # decisions a DecideBatch, as the decisions phase's headline
CONCURRENCY = 32  # requests in flight, as in the decisions phase
PROBE_EVERY = 0.01  # seconds between the takeover probe's requests
UNANSWERED_AFTER = 30.0  # seconds: a takeover not answered by then is recorded as this
PROBE_KEY = "key_0000000000000000"

_encode = msgspec.json.Encoder().encode


def usage_procs(b: Bench) -> list[Proc]:
    return [b.stack.procs[name] for name in ("usage", SECOND) if name in b.stack.procs]


async def _settle(b: Bench, view: leases.LeaseView) -> None:
    await view.until_settled({proc.pid for proc in usage_procs(b)})


async def _join_second(b: Bench, view: leases.LeaseView) -> None:
    b.stack.start_usage(SECOND)
    await _settle(b, view)


async def _leave_second(b: Bench, view: leases.LeaseView) -> None:
    """SIGTERM: it hands its partitions back, their counts saved."""
    await asyncio.to_thread(b.stack.stop, SECOND)
    await _settle(b, view)


# --- decisions with one and with two usage processes ---------------------------------------


async def _warm(nc: NATS, work: list[tuple[str, bytes, int]]) -> None:
    """Every account decided once: a process that has just taken a partition asks the keys
    service for its accounts' plans on their first decisions, which is not the rate measured."""
    outcome = await bus_load.decide_all(nc, work, 16)
    expected = sum(items for _, _, items in work)
    if outcome.get("admitted", 0) != expected:
        raise RuntimeError(f"warming the usage processes: {outcome} of {expected}")


async def _metered(b: Bench, nc: NATS, work: list[tuple[str, bytes, int]]) -> dict[str, Any]:
    """One run of the decisions load, with the CPU of every usage process and nats-server."""
    names = [proc.name for proc in usage_procs(b)]
    pids = {proc.name: proc.pid for proc in usage_procs(b)}
    pids["nats-server"] = b._nats_pid()
    with CpuMeter(pids) as meter:
        result = await bus_load.decisions(nc, work, b.config.usage_pair_seconds, CONCURRENCY)
    if result["bad"] or result["errors"]:
        raise RuntimeError(f"decisions refused or failed with {len(names)} usage processes")
    return {
        **result,
        "processes": len(names),
        "cpu_seconds": meter.seconds,
        "usage_cpu_seconds": sum(meter.seconds[name] for name in names),
        "others_cores": meter.others / meter.wall,
    }


def _side(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median rate; CPU per decision over every run together."""
    items = sum(run["items"] for run in runs)
    seconds = sum(run["seconds"] for run in runs)
    usage = sum(run["usage_cpu_seconds"] for run in runs)
    nats = sum(run["cpu_seconds"]["nats-server"] for run in runs)
    return {
        "per_second": median([run["per_second"] for run in runs]),
        "usage_cpu_us_per_decision": usage / items * 1e6,
        "nats_cpu_us_per_decision": nats / items * 1e6,
        "usage_cores": usage / seconds,
        "others_cores": median([run["others_cores"] for run in runs]),
    }


def _per_decision(run: dict[str, Any]) -> float:
    return float(run["usage_cpu_seconds"]) / max(1, int(run["items"]))


async def decisions_two(b: Bench) -> None:
    """DecideBatch load as the decisions phase makes it, alternately on one usage process and
    on two sharing the partitions (the second joins before its run and leaves after it)."""
    assert b.seeded is not None
    c = b.config
    accounts = [a.account_id for a in b.seeded.bulk[: c.decision_accounts]]
    work = bus_load.decide_work(usage_decide_subject, accounts, BATCH)
    runs: dict[str, list[dict[str, Any]]] = {"one": [], "two": []}
    say(f"decisions, one and two usage processes: {c.usage_pair_rounds} rounds")
    async with b.bus() as nc, b.bus("usage") as usage, leases.watching(usage) as view:
        for _ in range(c.usage_pair_rounds):
            await _settle(b, view)
            await _warm(nc, work)
            runs["one"].append(await _metered(b, nc, work))
            await _join_second(b, view)
            await _warm(nc, work)
            runs["two"].append(await _metered(b, nc, work))
            await _leave_second(b, view)
    one, two = _side(runs["one"]), _side(runs["two"])
    ratio = two["usage_cpu_us_per_decision"] / one["usage_cpu_us_per_decision"]
    pairs = zip(runs["one"], runs["two"], strict=True)
    by_round = [_per_decision(t) / _per_decision(o) for o, t in pairs]
    b.results["decisions_two"] = {
        "accounts": len(accounts),
        "batch": BATCH,
        "concurrency": CONCURRENCY,
        "rounds": c.usage_pair_rounds,
        "seconds": c.usage_pair_seconds,
        "one": one,
        "two": two,
        "cpu_ratio": ratio,
        "cpu_ratio_by_round": by_round,
        "rate_ratio": two["per_second"] / one["per_second"],
        "runs": runs,
    }
    say(
        f"decisions: one process {one['per_second']:,.0f}/s, two {two['per_second']:,.0f}/s; "
        f"usage CPU per decision two/one {ratio:.3f}"
    )


# --- takeover after a kill -------------------------------------------------------------------


def _probe(account_id: str) -> tuple[str, bytes]:
    """One decision for `account_id`, on its partition's subject."""
    batch = DecideBatch([Decide(account_id, PROBE_KEY)])
    return usage_decide_subject(partition_of(account_id)), _encode(batch)


async def _answer(nc: NATS, subject: str, payload: bytes, timeout: float) -> int | None:
    """The epoch of the holder that admitted the decision; None: no holder answered."""
    try:
        reply = await nc.request(subject, payload, timeout=timeout)
        batch = decision_batch_decoder.decode(reply.data)
    except Exception:  # no responders (no holder), no answer in time, or PARTITION_MOVED
        return None
    return batch.epoch if batch.decisions[0].admitted else None


async def _until_answered(nc: NATS, account_id: str, within: float = 30.0) -> int:
    subject, payload = _probe(account_id)
    deadline = time.monotonic() + within
    while (epoch := await _answer(nc, subject, payload, 1.0)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no usage process answers for {subject}")
        await asyncio.sleep(0.05)
    return epoch


async def _until_new_holder(nc: NATS, account_id: str, epoch: int, since: float) -> float:
    """When (perf_counter) a holder with an epoch above `epoch` first admitted a decision for
    the account. A request leaves every PROBE_EVERY seconds whatever became of the ones before,
    so a request waiting on its timeout does not delay the next; the earliest answer counts."""
    subject, payload = _probe(account_id)
    answered: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def ask() -> None:
        got = await _answer(nc, subject, payload, 1.0)
        if got is not None and got > epoch and not answered.done():
            answered.set_result(time.perf_counter())

    asking: set[asyncio.Task[None]] = set()
    while not answered.done() and time.perf_counter() < since + UNANSWERED_AFTER:
        start_held(asking, ask())
        await asyncio.sleep(PROBE_EVERY)
    await asyncio.gather(*asking)
    return answered.result() if answered.done() else since + UNANSWERED_AFTER


async def _kill_holder(
    b: Bench, nc: NATS, view: leases.LeaseView, account_id: str
) -> tuple[float, Proc]:
    """SIGKILLs the process holding the account's partition; seconds until a new holder
    answers for it, and the process killed."""
    partition = partition_of(account_id)
    epoch = await _until_answered(nc, account_id)
    deadline = time.monotonic() + 5.0
    while (holder := view.holder(partition)) is None or holder[1] != epoch:
        if time.monotonic() > deadline:  # the bucket must name the process that answered
            raise RuntimeError(f"partition {partition} answered at epoch {epoch}; {view}")
        await asyncio.sleep(0.02)
    victim = next(proc for proc in usage_procs(b) if proc.pid == holder[0])
    assert victim.popen is not None
    killed = time.perf_counter()
    victim.popen.kill()
    answered = await _until_new_holder(nc, account_id, epoch, killed)
    await asyncio.to_thread(victim.popen.wait, 10)
    return answered - killed, victim


def _lease_seconds(b: Bench) -> float:
    """USAGE_LEASE_SECONDS as the usage processes were told it (they inherit this
    environment), else its default."""
    told = {**os.environ, **b.stack.procs["usage"].env}.get("USAGE_LEASE_SECONDS")
    return float(told) if told else UsageSettings.lease_seconds


def _probe_accounts(b: Bench) -> list[str]:
    """An account of each partition."""
    assert b.seeded is not None
    found: dict[int, str] = {}
    for account in b.seeded.bulk:
        found.setdefault(partition_of(account.account_id), account.account_id)
    return [found[p] for p in range(USAGE_PARTITIONS)]


async def takeover(b: Bench) -> None:
    """Two usage processes; again and again, the holder of a partition (the next one each
    time) is killed, timed until the survivor answers for it, restarted, and the partitions
    settle over the two again."""
    kills = b.config.takeover_kills
    probes = _probe_accounts(b)
    times, rejoin_gaps = [], []
    say(f"usage takeover: {kills} kills of a partition's holder")
    async with b.bus() as nc, b.bus("usage") as usage, leases.watching(usage) as view:
        if SECOND not in b.stack.procs:
            await _join_second(b, view)
        for kill in range(kills):
            seconds, victim = await _kill_holder(b, nc, view, probes[kill % USAGE_PARTITIONS])
            times.append(seconds)
            handovers = len(view.gaps)
            victim.start(wait=False)
            await _settle(b, view)
            rejoin_gaps.append(max(view.gaps[handovers:], default=0.0))
            for account_id in probes:  # every partition answers again before the next kill
                await _until_answered(nc, account_id)
        await _leave_second(b, view)
    b.results["takeover"] = {
        "kills": kills,
        "lease_seconds": _lease_seconds(b),
        "probe_every_ms": PROBE_EVERY * 1000,
        "p50_s": median(times),
        "p99_s": percentile(times, 99),
        "max_s": max(times),
        "min_s": min(times),
        "unanswered": sum(t >= UNANSWERED_AFTER for t in times),
        "seconds": times,
        "rejoin_gap_max_s": max(rejoin_gaps),
        "rejoin_gaps_s": rejoin_gaps,
    }
    say(f"usage takeover: p50 {median(times):.2f}s, p99 {percentile(times, 99):.2f}s")
