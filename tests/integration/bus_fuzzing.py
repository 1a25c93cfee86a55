"""What the bus fuzz tests send, and how: Hypothesis strategies for payloads (random,
truncated, oversized, of the wrong shape, or of the right shape with extreme or wrong-typed
values), a synchronous NATS connection for Hypothesis's synchronous tests, valid messages of
every subject, and the check that the services still answer them."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import msgspec
import nats
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS

from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint
from aitbc_contracts.subjects import (
    KEYS_CHECK,
    KEYS_OPERATOR_COMMANDS,
    MSG_ID_HEADER,
    USAGE_QUERY,
    partition_of,
    usage_decide_subject,
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
from aitbc_runtime.bus_access import BusAccess
from tests.e2e.stack import Stack

T = TypeVar("T")
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

    def __init__(self, access: BusAccess) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc: NATS = self.run(nats.connect(**access.options()))

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


# --- valid messages, and the check that the services still answer them ---------------------


def account_on(partition: int) -> str:
    while True:
        account = "acc_" + uuid.uuid4().hex[:16]
        if partition_of(account) == partition:
            return account


def usage_event(account: str) -> bytes:
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


def usage_batch(account: str) -> bytes:
    events = [msgspec.json.decode(usage_event(account), type=UsageEvent) for _ in range(3)]
    return msgspec.json.encode(UsageBatch(events=events))


def requests_counted(bus: Bus, account: str) -> int:
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
        bus.request(KEYS_OPERATOR_COMMANDS, m.encoder.encode(create)), type=m.Reply
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
