"""Fuzzing every NATS subject the services listen on (Hypothesis), against the keys and usage
services running as processes: random, truncated, oversized and wrong-typed payloads get a
Rejected reply (request/reply) or are skipped and logged (the usage stream); the services stay
up and answer valid requests afterwards, and the usage aggregator keeps counting."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime, timedelta
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import msgspec
import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS

from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint
from aitbc_contracts.subjects import (
    KEYS_CHECK,
    KEYS_COMMANDS,
    MSG_ID_HEADER,
    USAGE_EVENTS_PREFIX,
    USAGE_PARTITIONS,
    USAGE_QUERY,
    partition_of,
    usage_batch_subject,
    usage_decide_subject,
    usage_event_subject,
)
from aitbc_contracts.usage import (
    Decide,
    DecideBatch,
    DecisionBatch,
    LastUsed,
    LastUsedQuery,
    UsageBatch,
    UsageEvent,
    UsageQuery,
    UsageSeries,
)
from tests.e2e.stack import Stack

T = TypeVar("T")
# Hypothesis warns that the reprs of our 100 kB payloads are large: they are meant to be.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
EXAMPLES = 120  # per subject
fuzz = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


class Bus:
    """A NATS connection on an event loop of its own thread, for synchronous Hypothesis tests."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc: NATS = self.run(nats.connect(url))

    def run(self, coroutine: Awaitable[T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    def request(self, subject: str, payload: bytes, timeout: float = 5) -> bytes:
        return self.run(self.nc.request(subject, payload, timeout=timeout)).data

    def publish(self, subject: str, payload: bytes) -> None:
        js = self.nc.jetstream()
        self.run(js.publish(subject, payload, headers={MSG_ID_HEADER: uuid.uuid4().hex}))

    def close(self) -> None:
        self.run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Bus]]:
    """NATS, the keys service and the usage service, as processes of their own."""
    stack = Stack(tmp_path_factory.mktemp("fuzz-bus"))
    try:
        stack.start_bus()
        bus = Bus(stack.nats.url)
        try:
            yield stack, bus
        finally:
            bus.close()
    finally:
        stack.stop()


# --- what to send -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),  # noqa: E501
    max_leaves=12,
)  # fmt: skip
plausible = st.one_of(
    json_values,
    st.sampled_from(
        [
            "acc_0123456789abcdef", "key_0123456789abcdef", "0" * 64, "f" * 63, "free", "pro",
            "enterprise", "gold", "operator", "master", "standard", "", "\x00", "ключ",
            "2030-01-01T00:00:00Z", "2030-01-01T00:00:00", "9999-12-31T23:59:59+14:00",
            "0001-01-01T00:00:00Z", "2020-01-01T00:00:00Z", "not a date",
        ]
    ),
    st.integers(-(2**70), 2**70),
    st.text(min_size=100, max_size=5000),
)  # fmt: skip


DATES = [
    "2030-01-01T00:00:00Z", "2030-01-01T00:00:00", "9999-12-31T23:59:59+14:00",
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00", "2020-01-01T00:00:00.123456-12:00",
]  # fmt: skip
STRINGS = ["acc_0123456789abcdef", "key_0123456789abcdef", "0" * 64, "free", "operator", ""]


def typed(tp: Any) -> st.SearchStrategy[Any]:
    """Values of the field's type, extreme ones included; now and then of another type."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        exact: st.SearchStrategy[Any] = st.sampled_from(args) | st.text(max_size=20)
    elif origin in (Union, UnionType):
        exact = st.one_of(*(typed(a) for a in args))
    elif tp is type(None):
        exact = st.none()
    elif tp is str:
        exact = st.sampled_from(STRINGS) | st.text(max_size=300) | st.text(min_size=1000)
    elif tp is bool:
        exact = st.booleans()
    elif tp is int:
        exact = st.integers(-(2**64), 2**64) | st.integers(-5, 5)
    elif tp is float:
        exact = st.floats(allow_nan=False, allow_infinity=False)
    elif tp is datetime:
        exact = st.sampled_from(DATES) | st.datetimes().map(datetime.isoformat)
    elif origin in (list, dict):
        exact = json_values
    else:
        exact = plausible
    return st.one_of(exact, exact, exact, plausible)


def shaped(tag_field: str, structs: list[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Messages that look right: a known tag, every required field, any others, each of its
    type (extreme values included) or, now and then, of another."""
    shapes = []
    for struct in structs:
        fields = msgspec.structs.fields(struct)
        shapes.append(
            st.fixed_dictionaries(
                {tag_field: st.just(struct.__struct_config__.tag)}
                | {f.encode_name: typed(f.type) for f in fields if f.required},
                optional={f.encode_name: typed(f.type) for f in fields if not f.required}
                | {"unexpected": plausible},
            )
        )
    return st.one_of(*shapes)


def payloads(valid: list[bytes], shapes: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=2000),  # random
        st.builds(lambda v, n: v[:n], st.sampled_from(valid), st.integers(0, 200)),  # truncated
        st.builds(lambda v, n: v + b" " * n + v, st.sampled_from(valid), st.integers(0, 100_000)),
        st.just(b"[" * 100_000),  # deep nesting
        st.just(b'{"key_hashes": ["' + b"a" * 500_000 + b'"]}'),  # oversized
        json_values.map(lambda v: json.dumps(v).encode()),  # JSON of the wrong shape
        shapes.map(lambda v: json.dumps(v).encode()),  # the right shape, wrong types/values
    )


CHECK_VALID = [m.encoder.encode(m.CheckKeys([hash_key(generate_key()), "0" * 64]))]
COMMANDS = list(m.AnyCommand.__args__)  # type: ignore[attr-defined]
COMMAND_VALID = [
    m.encoder.encode(m.GetAccount(account_id="acc_0123456789abcdef")),
    m.encoder.encode(m.ListKeys(account_id="acc_0123456789abcdef")),
]
DECIDE_VALID = [msgspec.json.encode(DecideBatch([Decide("acc_0123456789abcdef", "key_x")]))]
QUERY_VALID = [m.encoder.encode(LastUsedQuery("acc_0123456789abcdef"))]


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
        reply = msgspec.json.decode(bus.request(KEYS_COMMANDS, payload), type=m.Reply)
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
            msgspec.json.decode(data, type=DecisionBatch)

    send()
    assert_still_serving(services)


def test_usage_query(services: tuple[Stack, Bus]) -> None:
    _, bus = services

    @fuzz
    @given(payloads(QUERY_VALID, shaped("type", [UsageQuery, LastUsedQuery])))
    def send(payload: bytes) -> None:
        data = bus.request(USAGE_QUERY, payload)
        reply = msgspec.json.decode(data, type=UsageSeries | LastUsed | m.Rejected)
        if isinstance(reply, m.Rejected):
            assert reply.code == m.Code.VALIDATION_ERROR, (payload[:300], reply)

    send()
    assert_still_serving(services)


# --- the usage stream, consumed by the aggregator ---------------------------------------------


def test_usage_stream(services: tuple[Stack, Bus]) -> None:
    stack, bus = services
    shapes = shaped("type", [UsageEvent, UsageBatch])
    valid = [_event("acc_fuzz"), _batch("acc_fuzz")]

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
    event = msgspec.json.decode(_event("acc_fuzz"))
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
        account = _account_on(partition)
        bus.publish(usage_event_subject(account), _event(account))
        accounts[partition] = account
    deadline = time.monotonic() + 30
    waiting = dict(accounts)
    while waiting and time.monotonic() < deadline:
        for partition, account in list(waiting.items()):
            if _requests(bus, account) == 1:
                del waiting[partition]
        time.sleep(0.2)
    assert not waiting, f"the aggregator stopped counting on partitions {sorted(waiting)}"
    assert "skipped a malformed usage event" in (stack.root / "usage.log").read_text()
    assert_still_serving(services)


def _account_on(partition: int) -> str:
    while True:
        account = "acc_" + uuid.uuid4().hex[:16]
        if partition_of(account) == partition:
            return account


def _event(account: str) -> bytes:
    return msgspec.json.encode(
        UsageEvent(
            event_id=uuid.uuid4().hex,
            request_id=uuid.uuid4().hex,
            account_id=account,
            key_id="key_fuzz",
            method="GET",
            route="/v1/jobs",
            status=200,
            latency_ms=1.0,
            decision="admitted",
            at=datetime.now(UTC),
        )
    )


def _batch(account: str) -> bytes:
    events = [msgspec.json.decode(_event(account), type=UsageEvent) for _ in range(3)]
    return msgspec.json.encode(UsageBatch(events=events))


def _requests(bus: Bus, account: str) -> int:
    now = datetime.now(UTC)
    query = UsageQuery(account, now - timedelta(hours=1), now + timedelta(minutes=1))
    reply = msgspec.json.decode(bus.request(USAGE_QUERY, m.encoder.encode(query)), type=UsageSeries)
    return sum(minute.requests for minute in reply.minutes)


def assert_still_serving(services: tuple[Stack, Bus]) -> None:
    """Both processes alive, and each subject answers a valid request as it should."""
    stack, bus = services
    for name in ("keys", "usage"):
        popen = stack.processes[name].popen
        assert popen is not None and popen.poll() is None, f"the {name} service died"
    key = generate_key()
    create = m.CreateAccount(master_key_hash=hash_key(key), master_key_hint=hint(key))
    account = msgspec.json.decode(
        bus.request(KEYS_COMMANDS, m.encoder.encode(create)), type=m.Reply
    )
    assert isinstance(account, m.AccountView)
    checked = msgspec.json.decode(
        bus.request(KEYS_CHECK, m.encoder.encode(m.CheckKeys([hash_key(key)]))), type=m.CheckReply
    )
    assert isinstance(checked, m.CheckedKeys)
    (facts,) = checked.replies
    assert isinstance(facts, m.KeyFacts) and facts.account_id == account.account_id
    batch = DecideBatch([Decide(account.account_id, account.master_key_id)])
    subject = usage_decide_subject(partition_of(account.account_id))
    decided = msgspec.json.decode(
        bus.request(subject, msgspec.json.encode(batch)), type=DecisionBatch
    )
    assert decided.decisions[0].admitted
    last = msgspec.json.decode(
        bus.request(USAGE_QUERY, m.encoder.encode(LastUsedQuery(account.account_id))), type=LastUsed
    )
    assert isinstance(last, LastUsed)


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
    for subject in (KEYS_CHECK, KEYS_COMMANDS, usage_decide_subject(0), USAGE_QUERY):
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
