"""Reading what the usage stream and aggregates hold, for tests that compare them with reality."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import nats

from aitbc_contracts.subjects import USAGE_STREAM
from aitbc_contracts.usage import UsageEvent, usage_events_of
from aitbc_runtime.bus_access import BusAccess


async def _read(access: BusAccess) -> list[UsageEvent]:
    nc = await nats.connect(**access.options())
    try:
        js = nc.jetstream()
        info = await js.stream_info(USAGE_STREAM)
        events: list[UsageEvent] = []
        if info.state.messages == 0:  # an empty stream's first_seq is 0: no message to get
            return events
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg(USAGE_STREAM, seq)
            if message.data:
                events.extend(usage_events_of(message.data))
        return events
    finally:
        await nc.close()


def usage_events(access: BusAccess, *account_ids: str) -> list[UsageEvent]:
    """The accounts' events in the usage stream, read as `access` (tests: an auditor, who may
    get its messages but not pull them)."""
    wanted = set(account_ids)
    return [e for e in asyncio.run(_read(access)) if e.account_id in wanted]


def request_counts(access: BusAccess, account_id: str) -> Counter[str]:
    """How many times each request id is in the stream for this account."""
    return Counter(event.request_id for event in usage_events(access, account_id))


def usage_totals(client: httpx.Client, master: str, **params: str) -> dict[str, int]:
    response = client.get("/v1/usage", params=params, headers={"X-API-Key": master})
    assert response.status_code == 200, response.text
    totals: Counter[str] = Counter()
    for minute in response.json()["minutes"]:
        for name, value in minute.items():
            if name != "minute":
                totals[name] += value
    return dict(totals)


def wait_for(condition, timeout: float = 15.0, every: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)
