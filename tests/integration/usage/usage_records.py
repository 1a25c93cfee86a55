"""Usage records for the usage service's tests: events as edges publish them, served requests
as the gate records them, and the per-minute totals they add up to."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
from nats.aio.client import Client as NATS

from aitbc_contracts.subjects import MSG_ID_HEADER, partition_of, usage_event_subject
from aitbc_contracts.usage import UsageEvent
from aitbc_gate.usage_events import Served
from aitbc_usage import store

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def event(
    account: str,
    key: str = "key_1",
    status: int = 200,
    decision: str = "admitted",
    at: datetime = T0,
) -> UsageEvent:
    return UsageEvent(
        event_id=uuid.uuid4().hex,
        request_id=uuid.uuid4().hex,
        account_id=account,
        key_id=key,
        method="GET",
        route="/v1/jobs",
        status=status,
        latency_ms=1.5,
        decision=decision,  # type: ignore[arg-type]
        at=at,
    )


def served(account: str, status: int = 200) -> Served:
    """A request as the edge records it for its publisher, which makes its event."""
    return Served(
        uuid.uuid4().hex, account, "key_1", "GET", "", "/v1/jobs", status, 1.5, "admitted",
        T0.timestamp(),
    )  # fmt: skip


async def publish(nc: NATS, events: list[UsageEvent]) -> None:
    """Single events on their account's subject, as older edges published them: the edge's
    role may publish batches only now, so tests publish these as an operator."""
    js = nc.jetstream()
    for e in events:
        await js.publish(
            usage_event_subject(e.account_id),
            msgspec.json.encode(e),
            headers={MSG_ID_HEADER: e.event_id},
        )


async def totals(service_engine, account: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    minutes = await store.series(
        service_engine, account, T0 - timedelta(hours=1), T0 + timedelta(hours=1), None
    )
    return {
        "requests": sum(m.requests for m in minutes),
        "admitted": sum(m.admitted for m in minutes),
        "limited": sum(m.limited for m in minutes),
        "4xx": sum(m.status_4xx for m in minutes),
    }


async def wait_requests(engine, account: str, n: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    for _ in range(200):
        counted = await totals(engine, account)
        if counted["requests"] >= n:
            return counted
        await asyncio.sleep(0.05)
    return await totals(engine, account)


async def counted_through(nc: NATS, engine, partition: int) -> None:  # type: ignore[no-untyped-def]
    """Publishes a marker event on `partition` and waits until it is counted. The aggregator
    reads the stream in order and commits in order, so by then every message published before
    the marker is counted too: a check for double counting after this cannot pass vacuously."""
    marker = account_on(partition)
    await publish(nc, [event(marker)])
    assert (await wait_requests(engine, marker, 1))["requests"] == 1, "the marker never came"


def account_on(partition: int) -> str:
    while True:
        account = "acc_" + uuid.uuid4().hex[:16]
        if partition_of(account) == partition:
            return account
