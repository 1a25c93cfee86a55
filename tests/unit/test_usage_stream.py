"""The usage stream's two tags, read by one function; a bad event is refused alone; the
edge's batches: one per partition per flush, in order, never too large to publish."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest

from aitbc_contracts.subjects import (
    USAGE_EVENTS_SUBJECTS,
    partition_of,
    usage_batch_subject,
    usage_event_subject,
    usage_partition_subjects,
)
from aitbc_contracts.usage import UsageBatch, UsageEvent, usage_events_of
from aitbc_gate import metrics
from aitbc_gate.usage_events import (
    MAX_BATCH_BYTES,
    RouteTemplates,
    Served,
    UsagePublisher,
)

# A single event exactly as edges before batches published it: it must stay readable.
SINGLE = {
    "type": "usage.request.v1",
    "event_id": "5f0c6d3e9a2b4c1d8e7f6a5b4c3d2e1f",
    "request_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    "account_id": "acc_0123456789abcdef",
    "key_id": "key_0123456789abcdef",
    "method": "GET",
    "route": "/v1/jobs/{id}",
    "status": 200,
    "latency_ms": 12.5,
    "decision": "admitted",
    "at": "2026-11-29T12:00:00.123000Z",
}


def with_(**changes: object) -> dict[str, object]:
    return {**SINGLE, **changes}


def batch(*events: object) -> bytes:
    return json.dumps({"type": "usage.batch.v1", "events": list(events)}).encode()


def test_both_tags_decode_to_the_same_events() -> None:
    [single] = usage_events_of(json.dumps(SINGLE).encode())
    assert single.account_id == SINGLE["account_id"] and single.at.utcoffset() is not None
    other = with_(event_id="e2", status=429, decision="limited")
    assert usage_events_of(batch(SINGLE, other)) == [single, usage_events_of(batch(other))[0]]
    # What the edge encodes is what consumers decode, in order.
    events = usage_events_of(batch(SINGLE, other))
    assert usage_events_of(msgspec.json.encode(UsageBatch(events=events))) == events


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (with_(at="2026-11-29T12:00:00"), "timezone"),  # no offset: no minute to count it in
        (with_(account_id="a" * 65), "length"),  # wider than the aggregates' id columns
        (with_(key_id="k" * 65), "length"),
        (with_(status="x"), "int"),
        ({"type": "usage.request.v1"}, "missing"),
        ("not an object", "object"),
    ],
)
def test_a_bad_event_in_a_batch_costs_only_itself(bad: object, why: str) -> None:
    problems: list[str] = []
    events = usage_events_of(batch(SINGLE, bad, with_(event_id="e3")), problems)
    assert [e.event_id for e in events] == [SINGLE["event_id"], "e3"]
    assert len(problems) == 1 and "event 1 of a batch" in problems[0]
    assert why in problems[0].lower()
    # Alone, the same event is refused at decode.
    assert usage_events_of(json.dumps(bad).encode()) == []


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b"\xff" * 16, b"[]", b'{"type": "usage.batch.v1"}', b'{"type": "x.v9"}'],
)
def test_unreadable_messages_hold_no_events_and_say_why(payload: bytes) -> None:
    problems: list[str] = []
    assert usage_events_of(payload, problems) == []
    assert problems
    assert usage_events_of(payload) == []  # and without a list to say it in


def test_batches_and_single_events_share_each_partitions_subjects() -> None:
    account = str(SINGLE["account_id"])
    partition = partition_of(account)
    prefix = usage_partition_subjects(partition).removesuffix(">")
    assert usage_batch_subject(partition).startswith(prefix)
    assert usage_event_subject(account).startswith(prefix)
    assert usage_partition_subjects(partition).startswith(USAGE_EVENTS_SUBJECTS.removesuffix(">"))


def test_an_event_is_still_built_as_before() -> None:
    event = msgspec.json.decode(json.dumps(SINGLE).encode(), type=UsageEvent)
    assert json.loads(msgspec.json.encode(event)) == SINGLE


def _served(account: str, number: int, route: str = "/v1/jobs") -> Served:
    return Served(f"r{number}", account, "key_1", "GET", route, route, 200, 1.0, "admitted", 1e9)


def test_an_event_is_made_from_the_request_as_it_was_served() -> None:
    served = Served(
        "r1", "acc_1", "key_1", "POST", "", "/v1/jobs/123/logs", 201, 12.34567, "admitted", 1e9
    )
    templates = RouteTemplates(("jobs", "logs"))
    event, again = served.event(templates), served.event(templates)
    assert event.at == datetime.fromtimestamp(1e9, UTC) and event.latency_ms == 12.346
    assert (event.request_id, event.account_id, event.key_id, event.method) == (
        "r1", "acc_1", "key_1", "POST"
    )  # fmt: skip
    assert (event.route, event.status, event.decision) == ("/v1/jobs/{id}/logs", 201, "admitted")
    assert len(event.event_id) == 32 and event.event_id != again.event_id


def test_a_route_template_is_the_matched_one_or_the_path_without_its_ids() -> None:
    route_template = RouteTemplates(("jobs", "miners")).of
    assert route_template("/v1/keys/{key_id:str}", "/v1/keys/key_1") == "/v1/keys/{key_id:str}"
    forwarded = "/v1/{path:path}"  # the catch-all says nothing
    assert route_template(forwarded, "/v1/jobs") == "/v1/jobs"
    assert route_template(forwarded, "/v1/jobs/job_0a1b2c3d4e") == "/v1/jobs/{id}"
    assert route_template("", "/v1/miners/42/jobs") == "/v1/miners/{id}/jobs"


def _accounts() -> tuple[str, str]:
    a, b = "acc_0000000000000000", "acc_0000000000000001"
    assert partition_of(a) != partition_of(b)
    return a, b


def test_a_flush_is_one_batch_per_partition_with_each_partitions_order_kept() -> None:
    a, b = _accounts()
    publisher = UsagePublisher(None, capacity=1000, batch=500)  # type: ignore[arg-type]
    served = [_served(a if n % 3 else b, n) for n in range(30)]
    for s in served:
        publisher.emit(s)
    batches = publisher._form()
    assert sorted(x.subject for x in batches) == sorted(
        usage_batch_subject(partition_of(x)) for x in (a, b)
    )
    assert len({x.msg_id for x in batches}) == 2
    for x in batches:
        got = usage_events_of(x.payload)
        assert [e.request_id for e in got] == [
            s.request_id
            for s in served
            if usage_batch_subject(partition_of(s.account_id)) == x.subject
        ]
        assert len(x.seqs) == len(got)


def test_a_batch_too_large_to_publish_is_split_and_the_rest_waits_in_order() -> None:
    a, b = _accounts()
    publisher = UsagePublisher(None, capacity=1000, batch=500)  # type: ignore[arg-type]
    big = "/" + "x" * (MAX_BATCH_BYTES // 3)
    for s in [_served(a, n, big) for n in range(5)] + [_served(b, 5)]:
        publisher.emit(s)
    flushes = []
    while publisher.buffer:
        flushes.append(publisher._form())
        assert all(len(x.payload) <= MAX_BATCH_BYTES for x in flushes[-1])
    assert len(flushes) > 1
    sent = [e.request_id for f in flushes for x in f for e in usage_events_of(x.payload)]
    assert [n for n in sent if n != "r5"] == ["r0", "r1", "r2", "r3", "r4"]  # in order
    # One event too large on its own can never be stored: dropped, and counted.
    dropped = metrics.USAGE_EVENTS_DROPPED._value.get()
    publisher.buffer.clear()
    publisher.emit(_served(a, 9, "/" + "x" * MAX_BATCH_BYTES))
    assert publisher._form() == []
    assert metrics.USAGE_EVENTS_DROPPED._value.get() == dropped + 1
