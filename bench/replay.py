"""How fast `aitbc events replay` reads the key event log: 100,000 events on a private
nats-server, replayed by the real command in a child process; prints events per second.

    python bench/replay.py [--events 100000]

The events are what the relay publishes: chained, with the position and hash headers, spread
over many accounts and keys. The time is the whole command, interpreter start included, as an
operator would wait for it; the in-process read is printed beside it. Target: 20,000 events/s.
The command's CPU time is printed too: on a busy machine, wall time measures the neighbours.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import nats

from aitbc_cli import stream
from aitbc_contracts.chain import GENESIS, link
from aitbc_contracts.events import AnyEvent, KeyCreated, KeyRevoked, encode_event
from aitbc_contracts.subjects import (
    HASH_HEADER,
    KEY_EVENTS_STREAM,
    MSG_ID_HEADER,
    POSITION_HEADER,
    key_event_subject,
)
from aitbc_infra.bus_config import BusCredentials
from aitbc_infra.nats_server import NatsServer, free_port
from aitbc_keys.outbox import ensure_stream
from aitbc_runtime.bus_access import BusAccess

BIN = Path(sys.executable).parent
TARGET = 20_000  # events per second
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(n: int) -> AnyEvent:
    """Event n of a log of keys that are each created, then revoked ten events later."""
    key, created = divmod(n, 2)
    common = {
        "event_id": uuid.UUID(int=n).hex,
        "stream_id": f"key_{key:016x}",
        "account_id": f"acc_{key % 1000:016x}",
        "occurred_at": T0 + timedelta(milliseconds=n),
        "actor": f"key_{key % 1000:016x}",
        "request_id": f"req-{n}",
    }
    if not created:
        return KeyCreated(
            version=1,
            key_id=common["stream_id"],
            name="bench",
            kind="standard",
            secret_hash=f"{n:064x}",
            hint="aitbc_bnch",
            **common,  # type: ignore[arg-type]
        )
    return KeyRevoked(version=2, key_id=common["stream_id"], reason="bench", **common)  # type: ignore[arg-type]


async def publish(writer: BusAccess, count: int) -> None:
    """Publish as the relay would (as its role, keys-writer), without waiting for each ack: the
    stream must fill fast."""
    nc = await nats.connect(**writer.options())
    js = nc.jetstream()
    await ensure_stream(js)  # as the relay does (the server's start made it already)
    head = GENESIS
    for position in range(1, count + 1):
        ev = event(position - 1)
        data = encode_event(msgspec.structs.replace(ev, prev_hash=head))
        head = link(head, data)
        headers = {MSG_ID_HEADER: ev.event_id, POSITION_HEADER: str(position), HASH_HEADER: head}
        await nc.publish(key_event_subject(ev.account_id, ev.stream_id), data, headers=headers)
        if position % 5000 == 0:
            await nc.flush()
    await nc.flush()
    while (await js.stream_info(KEY_EVENTS_STREAM)).state.messages < count:
        await asyncio.sleep(0.05)
    await nc.close()


async def until_mirrored(auditor: BusAccess, count: int) -> None:
    """Until the mirror that every reader but the writer reads (aitbc_infra.bus_streams) holds
    the `count` events the writer stored in the key log."""
    nc = await nats.connect(**auditor.options())
    try:
        while (await nc.jetstream().stream_info(KEY_EVENTS_STREAM)).state.messages < count:
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


async def read_in_process(auditor: BusAccess) -> tuple[int, float]:
    nc = await nats.connect(**auditor.options())
    started = time.perf_counter()
    read = await stream.read(nc, stream.event_filter(), lambda *_: None)
    elapsed = time.perf_counter() - started
    await nc.close()
    return read.messages, elapsed


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def replay(operator: BusAccess, fmt: str, out: Path) -> tuple[int, float, float]:
    """The command as an operator runs it; returns (lines printed, seconds, CPU seconds)."""
    env = {**os.environ, "NATS_URL": operator.url, "NATS_CREDS": operator.creds}
    cpu, started = _children_cpu(), time.perf_counter()
    with out.open("wb") as sink:
        subprocess.run(
            [str(BIN / "aitbc"), "events", "replay", "--format", fmt],
            env=env,
            stdout=sink,
            check=True,
        )
    elapsed, cpu = time.perf_counter() - started, _children_cpu() - cpu
    with out.open("rb") as printed:
        lines = sum(1 for _ in printed)
    return lines, elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="aitbc-bench-replay-") as root:
        credentials = BusCredentials(Path(root) / "creds")
        server = NatsServer(free_port(), Path(root) / "js", credentials=credentials).start()
        try:
            started = time.perf_counter()
            asyncio.run(publish(server.access("keys-writer"), args.events))
            asyncio.run(until_mirrored(server.access("auditor"), args.events))
            print(f"published {args.events} events in {time.perf_counter() - started:.1f} s")
            count, seconds = asyncio.run(read_in_process(server.access("auditor")))
            print(f"stream read (in process):      {count / seconds:>9,.0f} events/s")
            results = {}
            for fmt in ("jsonl", "table"):
                lines, seconds, cpu = replay(server.access(), fmt, Path(root) / f"replay.{fmt}")
                expected = args.events + (1 if fmt == "table" else 0)  # the table's header
                assert lines == expected, f"{fmt}: printed {lines} lines, expected {expected}"
                results[fmt] = args.events / seconds
                print(
                    f"aitbc events replay --format {fmt}: {results[fmt]:>9,.0f} events/s "
                    f"({seconds:.2f} s for {args.events:,}, process start included; "
                    f"{args.events / cpu:,.0f} events per CPU second)"
                )
        finally:
            server.stop()
    ok = results["jsonl"] >= TARGET
    print(f"target {TARGET:,} events/s (jsonl): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
