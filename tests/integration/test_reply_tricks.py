"""The reply-subject tricks, on a real nats-server with the real configuration.

A client may name any subject as the reply of what it sends. Two things then publish there
with powers the client lacks: a responder (the server lets it answer any reply subject,
allow_responses) and JetStream itself (the PubAck of a publish into a stream). Neither can
put a message into the key event log: it lives in an account of its own, which nothing but
its writer publishes into, and the main account reads it from mirrors that have no subjects.

The main account's own streams are guarded by the responders themselves: every responder of
the system answers inboxes only (aitbc_runtime.bus.answerable), so a request naming
`$JS.API.STREAM.PURGE.AITBC_USAGE` as its reply purges nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
from nats.aio.msg import Msg

from aitbc_contracts import messages as m
from aitbc_contracts import subjects as s
from aitbc_infra.nats_server import NatsServer
from aitbc_keys.checks import KeyChecks
from aitbc_keys.db import create_engine
from aitbc_keys.responder import CheckResponder
from aitbc_runtime.broker import service_broker
from aitbc_runtime.bus import refused_replies
from aitbc_usage.answering import answer_decisions
from aitbc_usage.handlers import Deciding
from aitbc_usage.plans import PlanBook
from tests.bus_clients import connected

FORGED_EVENT = s.key_event_subject("acc_0000000000000000", "key_0000000000000000")
PURGE_USAGE = f"$JS.API.STREAM.PURGE.{s.USAGE_STREAM}"
EMPTY_CHECK = m.encoder.encode(m.CheckKeys([]))
EMPTY_DECISIONS = b'{"items": []}'


async def key_log_sizes(server: NatsServer) -> tuple[int, int]:
    """(messages in the key log in KEYLOG, messages in its mirror in AITBC)."""
    sizes = []
    for role in ("keylog-admin", "admin"):
        async with connected(server, role) as nc:
            sizes.append((await nc.jetstream().stream_info(s.KEY_EVENTS_STREAM)).state.messages)
    return sizes[0], sizes[1]


async def with_usage_stream(server: NatsServer) -> int:
    """The usage stream with one batch in it, as the usage service and an edge make it."""
    async with connected(server, "usage") as usage:
        await usage.jetstream().add_stream(name=s.USAGE_STREAM, subjects=[s.USAGE_EVENTS_SUBJECTS])
    async with connected(server, "edge") as edge:
        await edge.jetstream().publish(s.usage_batch_subject(1), b"{}")
    return await usage_size(server)


async def usage_size(server: NatsServer) -> int:
    async with connected(server, "admin") as admin:
        return (await admin.jetstream().stream_info(s.USAGE_STREAM)).state.messages


async def settled(server: NatsServer) -> None:
    """Long enough for anything sent to have been stored and mirrored."""
    async with connected(server, "admin") as admin:
        await admin.flush()
    await asyncio.sleep(0.3)


@pytest.mark.parametrize(
    ("requester", "responder", "subject"),
    [
        ("edge", "keys", s.KEYS_CHECK),
        ("edge", "usage", s.usage_decide_subject(3)),
        ("usage", "keys", s.KEYS_READ_COMMANDS),
        ("usage", "usage", s.usage_decide_subject(3)),  # a responder asking itself
    ],
)
async def test_a_responder_that_answers_anything_still_cannot_write_the_key_log(
    own_nats: NatsServer, requester: str, responder: str, subject: str
) -> None:
    """Even a responder without the guard (an old or a compromised one, here a bare echo that
    also names a reply of its own choosing) stores nothing in the key log."""
    async with connected(own_nats, responder) as answering, connected(own_nats, requester) as ask:

        async def echo(msg: Msg) -> None:
            await answering.publish(msg.reply, b'{"forged": true}', reply=FORGED_EVENT)

        await answering.subscribe(subject, cb=echo)
        await answering.flush()
        await ask.publish(subject, EMPTY_CHECK, reply=FORGED_EVENT)
        await settled(own_nats)
    assert await key_log_sizes(own_nats) == (0, 0)


@pytest.mark.parametrize(
    ("role", "subject"),
    [
        ("edge", s.usage_batch_subject(1)),  # its usage batches
        ("edge", f"$KV.{s.DASHBOARD_SESSIONS_BUCKET}.session"),  # its bucket
        ("usage", f"$KV.{s.USAGE_COUNTERS_BUCKET}.p1"),
    ],
)
async def test_a_pub_ack_cannot_be_sent_into_the_key_log(
    own_nats: NatsServer, role: str, subject: str
) -> None:
    await with_usage_stream(own_nats)
    async with connected(own_nats, role) as nc:
        js = nc.jetstream()
        await js.create_key_value(bucket=subject.split(".")[1]) if "$KV" in subject else None
        acks: list[Msg] = []

        async def saw(msg: Msg) -> None:
            acks.append(msg)

        async with connected(own_nats, "admin") as witness:
            await witness.subscribe(FORGED_EVENT, cb=saw)
            await witness.flush()
            # Sent again each second until JetStream acks one: on a loaded machine a stream
            # just made may let the first go by unstored and unanswered.
            for _ in range(10):
                await nc.publish(subject, b"{}", reply=FORGED_EVENT)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        while not acks:
                            await asyncio.sleep(0.01)
                if acks:
                    break
            await settled(own_nats)
    assert acks, "JetStream sent no PubAck there: the test would prove nothing"
    assert await key_log_sizes(own_nats) == (0, 0)


@dataclass
class Responder:
    name: str
    subject: str
    request: bytes
    start: Callable[[NatsServer, AsyncExitStack], Awaitable[None]]


async def start_check_responder(server: NatsServer, stack: AsyncExitStack) -> None:
    nc = await stack.enter_async_context(connected(server, "keys"))
    engine = create_engine("sqlite+aiosqlite://")  # an empty check never asks it
    stack.push_async_callback(engine.dispose)
    responder = CheckResponder(KeyChecks(engine))
    await responder.start(nc)
    stack.push_async_callback(responder.stop)


async def start_decisions(server: NatsServer, stack: AsyncExitStack) -> None:
    nc = await stack.enter_async_context(connected(server, "usage"))

    async def no_plan(account_id: str) -> str | None:
        return None

    deciding = Deciding(PlanBook(no_plan), {}, (3,))
    for subscription in await answer_decisions(nc, deciding, (3,)):
        stack.push_async_callback(subscription.unsubscribe)
    await nc.flush()


async def start_faststream(server: NatsServer, stack: AsyncExitStack) -> None:
    """A service's FastStream broker (keys' commands, usage's queries): its guard is the
    broker's, whatever the subscriber."""
    broker = service_broker(server.access("usage"), "aitbc-usage")

    @broker.subscriber(s.USAGE_QUERY, queue=s.USAGE_QUEUE)
    async def answer(body: bytes) -> bytes:
        return b'{"answered": true}'

    await broker.start()
    stack.push_async_callback(broker.stop)


RESPONDERS = [
    Responder("key checks", s.KEYS_CHECK, EMPTY_CHECK, start_check_responder),
    Responder("usage decisions", s.usage_decide_subject(3), EMPTY_DECISIONS, start_decisions),
    Responder("FastStream subscribers", s.USAGE_QUERY, b"{}", start_faststream),
]


@pytest.mark.parametrize("responder", RESPONDERS, ids=lambda r: r.name)
async def test_every_responder_answers_inboxes_only(
    own_nats: NatsServer, responder: Responder
) -> None:
    before = await with_usage_stream(own_nats)
    refused = refused_replies.count
    async with AsyncExitStack() as stack:
        await responder.start(own_nats, stack)
        edge = await stack.enter_async_context(connected(own_nats, "edge"))
        answer = await edge.request(responder.subject, responder.request, timeout=5)
        assert answer.data  # an inbox: answered
        witness = await stack.enter_async_context(connected(own_nats, "admin"))
        seen: list[Msg] = []

        async def saw(msg: Msg) -> None:
            seen.append(msg)

        await witness.subscribe(PURGE_USAGE, cb=saw)
        await witness.flush()
        await edge.publish(responder.subject, responder.request, reply=PURGE_USAGE)
        await settled(own_nats)
    assert seen == []
    assert refused_replies.count == refused + 1
    assert await usage_size(own_nats) == before
