"""`aitbc usage tail [--account A]`: watch the usage stream live, one request a line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any, TextIO

import msgspec
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from aitbc_cli import bus
from aitbc_cli.bus import Send
from aitbc_cli.events import positive
from aitbc_cli.output import json_safe
from aitbc_contracts.names import escaped
from aitbc_contracts.subjects import (
    USAGE_EVENTS_SUBJECTS,
    USAGE_STREAM,
    partition_of,
    usage_partition_subjects,
)
from aitbc_contracts.usage import UsageEvent, usage_events_of

_encode = msgspec.json.Encoder().encode


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    usage = commands.add_parser("usage", help="watch what clients do")
    sub = usage.add_subparsers(dest="action", metavar="ACTION", required=True)
    tail = sub.add_parser("tail", parents=[common], help="print usage events as they happen")
    tail.add_argument("--account", help="only this account's requests")
    tail.add_argument("--count", type=positive, help="stop after this many events")
    tail.add_argument(
        "--from-start", action="store_true", help="begin with the oldest stored event"
    )
    tail.set_defaults(handler=tail_usage)


def line(event: UsageEvent) -> str:
    return escaped(
        f"{event.at.isoformat(timespec='milliseconds')}  {event.account_id}  {event.key_id}  "
        f"{event.method:<6} {event.route:<32} {event.status}  {event.latency_ms:>8.1f}ms  "
        f"{event.decision}  {event.request_id}"
    )


async def tail_usage(args: argparse.Namespace, _send: Send, out: TextIO) -> int:
    # An account's events share its partition's batches with other accounts': filter them.
    subject = (
        usage_partition_subjects(partition_of(args.account))
        if args.account
        else USAGE_EVENTS_SUBJECTS
    )
    nc = await bus.connect(args.bus, args.timeout)
    done = asyncio.Event()
    seen = 0

    async def show(msg: Msg) -> None:
        nonlocal seen
        for event in usage_events_of(msg.data):  # a single event or a batch; unreadable: none
            if done.is_set():
                return
            if args.account and event.account_id != args.account:
                continue
            # --json: one event a line, in the stream's schema (a usage.request.v1 object)
            out.write((json_safe(_encode(event).decode()) if args.json else line(event)) + "\n")
            seen += 1
            if args.count is not None and seen >= args.count:
                done.set()
        out.flush()

    try:
        policy = DeliverPolicy.ALL if args.from_start else DeliverPolicy.NEW
        # By name: an operator reads the mirror of its account, which has no subjects to find
        # it by (aitbc_infra.bus_streams).
        await nc.jetstream().subscribe(
            subject, stream=USAGE_STREAM, cb=show, ordered_consumer=True, deliver_policy=policy
        )
        with contextlib.suppress(asyncio.CancelledError):
            await done.wait()
    finally:
        await nc.close()
    return 0
