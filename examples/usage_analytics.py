"""An example analytics consumer of the usage stream: requests per route and status, live.

It is what an analytics team would start from: a durable JetStream consumer of its own (so
it resumes where it stopped and never disturbs the usage service's aggregates), reading the
events of each message (a batch, or a single event in older streams) with
`aitbc_contracts.usage.usage_events_of`, in the documented schema `UsageEvent`.

    .venv/bin/python examples/usage_analytics.py [--nats-url URL] [--creds FILE] [--durable NAME]

It reaches the bus as the services do (aitbc_runtime.bus_access), as the `analytics` role
(docs/security.md), which may read the usage stream and nothing else: `--creds` (or
NATS_CREDS) names its seed, `.data/creds/analytics.nk` where `just up` made it; NATS_URL, and
NATS_TLS_CA and the like where the bus has TLS.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from dataclasses import replace

import nats
from nats.errors import TimeoutError as NatsTimeoutError

from aitbc_contracts.subjects import USAGE_EVENTS_SUBJECTS, USAGE_STREAM
from aitbc_contracts.usage import usage_events_of
from aitbc_runtime.bus_access import BusAccess


async def main(access: BusAccess, durable: str, every: float) -> None:
    nc = await nats.connect(**access.options())
    subscription = await nc.jetstream().pull_subscribe(
        USAGE_EVENTS_SUBJECTS, durable=durable, stream=USAGE_STREAM
    )
    by_route: Counter[tuple[str, str, int]] = Counter()
    loop = asyncio.get_running_loop()
    next_report = loop.time() + every
    try:
        while True:
            try:
                messages = await subscription.fetch(500, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                messages = []
            for msg in messages:
                for event in usage_events_of(msg.data):  # not ours to judge: skips the unreadable
                    by_route[(event.method, event.route, event.status)] += 1
            for msg in messages:
                await msg.ack()  # after counting: a crash re-reads rather than loses
            if loop.time() >= next_report:
                next_report += every
                print(f"--- {sum(by_route.values())} requests")
                for (method, route, status), count in by_route.most_common(10):
                    print(f"{count:>8}  {method:<6} {route:<40} {status}")
    finally:
        await nc.close()


if __name__ == "__main__":
    bus = BusAccess.from_env()  # NATS_URL (else `just up`'s), NATS_CREDS, NATS_TLS_*
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats-url", default=bus.url)
    parser.add_argument("--creds", default=bus.creds or ".data/creds/analytics.nk")
    parser.add_argument("--durable", default="analytics-example")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between reports")
    args = parser.parse_args()
    chosen = replace(bus, url=args.nats_url, creds=args.creds)
    asyncio.run(main(chosen, args.durable, args.every))
