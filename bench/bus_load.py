"""Load over NATS: auth checks (CheckKeys) and batched rate-limit decisions (DecideBatch), sent
by a fixed number of concurrent requesters for a fixed time, as fast as the replies come."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from aitbc_contracts import messages as m
from aitbc_contracts.subjects import USAGE_PARTITIONS, partition_of
from aitbc_contracts.usage import Decide, DecideBatch, decision_batch_decoder

_encode = msgspec.json.Encoder().encode


async def _drive(
    nc: NATS,
    work: Sequence[tuple[str, bytes, int]],
    duration: float,
    concurrency: int,
    check: Callable[[bytes], bool],
    first: int = 0,
) -> dict[str, float]:
    """Requesters take (subject, payload, items) from `work` in turn, from `first` on, until
    `duration` has passed; `next` in the result is where the following run should start."""
    clock = time.perf_counter
    counts = {"requests": 0, "items": 0, "bad": 0, "errors": 0}
    cursor = first
    start = clock()
    deadline = start + duration

    async def requester() -> None:
        nonlocal cursor
        while clock() < deadline:
            subject, payload, items = work[cursor % len(work)]
            cursor += 1
            try:
                reply = await nc.request(subject, payload, timeout=10)
            except Exception:
                counts["errors"] += 1
                continue
            counts["requests"] += 1
            if check(reply.data):
                counts["items"] += items
            else:
                counts["bad"] += 1

    await asyncio.gather(*(requester() for _ in range(concurrency)))
    elapsed = clock() - start
    return {**counts, "seconds": elapsed, "per_second": counts["items"] / elapsed, "next": cursor}


def check_work(
    subject: str, key_hashes: Sequence[str], batch: int = 1
) -> list[tuple[str, bytes, int]]:
    """Batches of `batch` distinct hashes, walking every hash once."""
    return [
        (subject, m.encoder.encode(m.CheckKeys(list(key_hashes[i : i + batch]))), batch)
        for i in range(0, len(key_hashes) - batch + 1, batch)
    ]


def _is_facts(data: bytes) -> bool:
    """Every item known (a byte scan: decoding would cost the requester more than the check)."""
    return data.startswith(b'{"type":"checked_keys"') and b'"rejected"' not in data


async def auth_checks(
    nc: NATS,
    work: Sequence[tuple[str, bytes, int]],
    duration: float,
    concurrency: int,
    first: int = 0,
) -> dict[str, float]:
    """Each key once before any is asked again: with 100,000 keys, no run repeats one."""
    return await _drive(nc, work, duration, concurrency, _is_facts, first)


def decide_work(
    subject_of: Callable[[int], str], account_ids: Sequence[str], batch: int
) -> list[tuple[str, bytes, int]]:
    """Batches of `batch` decisions, each for accounts of one partition, partitions interleaved."""
    by_partition: list[list[str]] = [[] for _ in range(USAGE_PARTITIONS)]
    for account_id in account_ids:
        by_partition[partition_of(account_id)].append(account_id)
    per_partition: list[list[tuple[str, bytes, int]]] = []
    for partition, accounts in enumerate(by_partition):
        if not accounts:
            continue
        batches = []
        # enough batches to walk every account of the partition once, at least one
        for start in range(0, max(len(accounts), batch), batch):
            items = [
                Decide(accounts[(start + i) % len(accounts)], "key_0000000000000000", None, "")
                for i in range(batch)
            ]
            batches.append((subject_of(partition), _encode(DecideBatch(items)), batch))
        per_partition.append(batches)
    work = []
    for round_ in range(max(len(b) for b in per_partition)):
        for batches in per_partition:
            work.append(batches[round_ % len(batches)])
    return work


def _admitted_all(data: bytes) -> bool:
    try:
        decisions = decision_batch_decoder.decode(data).decisions
    except msgspec.MsgspecError:
        return False
    return all(d.admitted and not d.code for d in decisions)


def _decoded(data: bytes) -> bool:
    return data.startswith(b'{"decisions":[')


async def decisions(
    nc: NATS,
    work: Sequence[tuple[str, bytes, int]],
    duration: float,
    concurrency: int,
    verify: bool = False,
) -> dict[str, float]:
    """`verify` decodes every reply and requires every decision admitted (for warm-ups)."""
    return await _drive(nc, work, duration, concurrency, _admitted_all if verify else _decoded)


async def decide_all(
    nc: NATS, work: Sequence[tuple[str, bytes, int]], concurrency: int
) -> dict[str, int]:
    """Every batch of `work` once; counts admitted, refused (by code) and failed requests."""
    outcome: dict[str, int] = {"admitted": 0}
    queue = iter(work)

    async def requester() -> None:
        for subject, payload, _ in queue:
            try:
                reply = await nc.request(subject, payload, timeout=30)
                batch = decision_batch_decoder.decode(reply.data).decisions
            except Exception as exc:
                outcome[type(exc).__name__] = outcome.get(type(exc).__name__, 0) + 1
                continue
            for decision in batch:
                if decision.admitted and not decision.code:
                    outcome["admitted"] += 1
                else:
                    outcome[decision.code or "limited"] = (
                        outcome.get(decision.code or "limited", 0) + 1
                    )

    await asyncio.gather(*(requester() for _ in range(concurrency)))
    return outcome


async def probe(nc: NATS, subject: str, payload: bytes, stop: asyncio.Event) -> list[float]:
    """Round trips (ms) of one small request every 10 ms until `stop`: how long a decision
    waits in the usage process while something else loads it."""
    clock = time.perf_counter
    rtts = []
    while not stop.is_set():
        sent = clock()
        try:
            await nc.request(subject, payload, timeout=5)
        except Exception:
            rtts.append(5000.0)
        else:
            rtts.append((clock() - sent) * 1000)
        await asyncio.sleep(0.01)
    return rtts


async def paced_round_trips(
    nc: NATS, subject: str, payload: bytes, rate: float, seconds: float
) -> int:
    """Single requests at a fixed rate, each sent on schedule without waiting for the one
    before: what a bare round trip costs the bus and its responder at that rate."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    total = int(rate * seconds)
    pending: set[asyncio.Future[Msg]] = set()
    for i in range(total):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        future = asyncio.ensure_future(nc.request(subject, payload, timeout=5))
        pending.add(future)
        future.add_done_callback(pending.discard)
    await asyncio.gather(*pending, return_exceptions=True)
    return total
