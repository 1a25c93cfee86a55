"""Fuzzing every NATS subject the services listen on (Hypothesis), against the keys and usage
services running as processes: random, truncated, oversized and wrong-typed payloads get a
Rejected reply (request/reply) or are skipped and logged (the usage stream); the services stay
up and answer valid requests afterwards, and the usage aggregator keeps counting."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitbc_contracts import messages as m
from aitbc_contracts import usage as u
from aitbc_contracts.subjects import (
    KEYS_CHECK,
    KEYS_OPERATOR_COMMANDS,
    USAGE_EVENTS_PREFIX,
    USAGE_PARTITIONS,
    USAGE_QUERY,
    usage_batch_subject,
    usage_decide_subject,
    usage_event_subject,
)
from tests.e2e.stack import Stack
from tests.integration.bus_fuzzing import (
    CHECK_VALID,
    COMMAND_VALID,
    COMMANDS,
    DECIDE_VALID,
    QUERY_VALID,
    Bus,
    account_on,
    assert_still_serving,
    fuzz,
    json_values,
    payloads,
    plausible,
    requests_counted,
    shaped,
    usage_batch,
    usage_event,
)

# Hypothesis warns that the reprs of our 100 kB payloads are large: they are meant to be.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Bus]]:
    """NATS, the keys service and the usage service, as processes of their own."""
    stack = Stack(tmp_path_factory.mktemp("fuzz-bus"))
    try:
        stack.start_bus()
        # It sends on every subject a service listens on, operator commands and usage events in
        # the old single-event format among them: beyond any one role, so as an operator.
        bus = Bus(stack.nats.access())
        try:
            yield stack, bus
        finally:
            bus.close()
    finally:
        stack.stop()


# --- request/reply subjects -------------------------------------------------------------------


def test_keys_check(services: tuple[Stack, Bus]) -> None:
    _, bus = services

    @fuzz
    @given(payloads(CHECK_VALID, shaped("type", [m.CheckKeys])))
    def send(payload: bytes) -> None:
        reply = msgspec.json.decode(bus.request(KEYS_CHECK, payload), type=m.CheckReply)
        # refused as a whole, or item by item: no fuzzed hash is a key
        replies = reply.replies if isinstance(reply, m.CheckedKeys) else [reply]
        for item in replies:
            assert isinstance(item, m.Rejected) and item.code in (
                m.Code.VALIDATION_ERROR,
                m.Code.INVALID_API_KEY,
            ), reply

    send()
    assert_still_serving(services)


def test_keys_commands(services: tuple[Stack, Bus]) -> None:
    _, bus = services

    @fuzz
    @given(payloads(COMMAND_VALID, shaped("command", COMMANDS)))
    def send(payload: bytes) -> None:
        reply = msgspec.json.decode(bus.request(KEYS_OPERATOR_COMMANDS, payload), type=m.Reply)
        if isinstance(reply, m.Rejected):
            assert reply.code != m.Code.INTERNAL_ERROR, (payload[:300], reply)

    send()
    assert_still_serving(services)


def test_usage_decide(services: tuple[Stack, Bus]) -> None:
    _, bus = services
    items = st.lists(st.lists(plausible, max_size=5), max_size=4)
    shapes = st.one_of(
        st.builds(lambda i: {"items": i}, items), st.builds(lambda i: {"items": i}, json_values)
    )

    @fuzz
    @given(payloads(DECIDE_VALID, shapes), st.integers(0, USAGE_PARTITIONS - 1))
    def send(payload: bytes, partition: int) -> None:
        data = bus.request(usage_decide_subject(partition), payload)
        if msgspec.json.decode(data).get("type") == "rejected":
            reply = msgspec.json.decode(data, type=m.Rejected)
            assert reply.code == m.Code.VALIDATION_ERROR, reply
        else:
            msgspec.json.decode(data, type=u.DecisionBatch)

    send()
    assert_still_serving(services)


def test_usage_query(services: tuple[Stack, Bus]) -> None:
    _, bus = services

    @fuzz
    @given(payloads(QUERY_VALID, shaped("type", [u.UsageQuery, u.LastUsedQuery])))
    def send(payload: bytes) -> None:
        data = bus.request(USAGE_QUERY, payload)
        reply = msgspec.json.decode(data, type=u.UsageSeries | u.LastUsed | m.Rejected)
        if isinstance(reply, m.Rejected):
            assert reply.code == m.Code.VALIDATION_ERROR, (payload[:300], reply)

    send()
    assert_still_serving(services)


# --- the usage stream, consumed by the aggregator ---------------------------------------------


def test_usage_stream(services: tuple[Stack, Bus]) -> None:
    stack, bus = services
    shapes = shaped("type", [u.UsageEvent, u.UsageBatch])
    valid = [usage_event("acc_fuzz"), usage_batch("acc_fuzz")]

    @fuzz
    @given(payloads(valid, shapes), st.integers(0, USAGE_PARTITIONS - 1), st.booleans())
    def publish(payload: bytes, partition: int, batched: bool) -> None:
        subject = (
            usage_batch_subject(partition)
            if batched
            else f"{USAGE_EVENTS_PREFIX}.{partition}.acc_fuzz"
        )
        bus.publish(subject, payload)

    # Events that decode but that the aggregates cannot take, each of which once stopped a
    # partition's counting for good (its batch failed on every retry).
    event = msgspec.json.decode(usage_event("acc_fuzz"))
    for partition in range(USAGE_PARTITIONS):
        for poison in [
            {**event, "event_id": uuid.uuid4().hex, "at": "2030-01-01T00:00:00"},  # no offset,
            {**event, "event_id": uuid.uuid4().hex},  # beside an aware one for the same key
            {**event, "event_id": uuid.uuid4().hex, "account_id": "a" * 500},
            {**event, "event_id": uuid.uuid4().hex, "key_id": "k" * 65},
        ]:
            bus.publish(f"{USAGE_EVENTS_PREFIX}.{partition}.acc_fuzz", json.dumps(poison).encode())
            # The same, inside a batch: it costs only itself.
            batch = {"type": "usage.batch.v1", "events": [event, poison]}
            bus.publish(usage_batch_subject(partition), json.dumps(batch).encode())
    publish()
    # Afterwards, on every partition, a valid event is still counted: nothing got stuck.
    accounts = {}
    for partition in range(USAGE_PARTITIONS):
        account = account_on(partition)
        bus.publish(usage_event_subject(account), usage_event(account))
        accounts[partition] = account
    deadline = time.monotonic() + 30
    waiting = dict(accounts)
    while waiting and time.monotonic() < deadline:
        for partition, account in list(waiting.items()):
            if requests_counted(bus, account) == 1:
                del waiting[partition]
        time.sleep(0.2)
    assert not waiting, f"the aggregator stopped counting on partitions {sorted(waiting)}"
    assert "skipped a malformed usage event" in (stack.root / "usage.log").read_text()
    assert_still_serving(services)


# What each service logs when it turns a malformed message away: the log scan below must see
# these for the messages it sent itself, its proof that it reads logs the traffic went to.
TURNED_AWAY = {
    "keys": ["malformed key check", "malformed command"],
    "usage": [
        "refused a malformed decision batch",
        "refused a malformed usage query",
        "skipped a malformed usage event",
    ],
}
# What a handler logs when it gives up with an unexpected error (log.exception: a traceback).
UNEXPECTED = {
    "keys": ["Traceback", "unhandled error", "failed (request", "key check failed"],
    "usage": ["Traceback", "usage query failed", "aggregator failed", "deciding a batch failed"],
}


def test_nothing_crashed_or_failed_unexpectedly(services: tuple[Stack, Bus]) -> None:
    """Runs last in this module, so it reads what every fuzz test above left in the logs; run
    alone or first it still sends malformed messages of its own on every subject, and fails
    unless the logs show them turned away before it looks for unexpected errors."""
    stack, bus = services
    malformed = b'{"type": "not a message", "\x00'
    for subject in (KEYS_CHECK, KEYS_OPERATOR_COMMANDS, usage_decide_subject(0), USAGE_QUERY):
        reply = msgspec.json.decode(bus.request(subject, malformed), type=m.Rejected)
        assert reply.code == m.Code.VALIDATION_ERROR, (subject, reply)
    bus.publish(f"{USAGE_EVENTS_PREFIX}.0.acc_fuzz", malformed)  # read by the aggregator

    logs = _logs_showing(stack, TURNED_AWAY, timeout=30)
    for name, words in UNEXPECTED.items():
        for word in words:
            assert word not in logs[name], _around(logs[name], word)


def _logs_showing(stack: Stack, wanted: dict[str, list[str]], timeout: float) -> dict[str, str]:
    """Each service's log, once it holds every one of its `wanted` lines (a generous deadline:
    the usage stream is read a moment after it is published to)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = {name: (stack.root / f"{name}.log").read_text() for name in wanted}
        missing = {
            name: [w for w in words if w not in logs[name]] for name, words in wanted.items()
        }
        if not any(missing.values()):
            return logs
        assert time.monotonic() < deadline, f"the logs never showed {missing}"
        time.sleep(0.1)


def _around(log: str, word: str) -> str:
    at = log.index(word)
    return log[max(0, at - 500) : at + 1500]
