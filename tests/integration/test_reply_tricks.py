"""The reply-subject tricks against the JetStream API, on a real nats-server with the real
configuration (test_reply_stores.py: against every store).

A responder (allow_responses) may publish to whatever reply subject the requester named, past
every deny. A request from another account (an edge asking the keys service) reaches it with
a reply subject the server made (`_R_.`), and the answer is published in the requester's
account, on the subject the requester named: that account holds only stores the requester may
write (aitbc_infra.bus_roles), and its JetStream API does not take such an answer as a request
(nats-server 2.15: a purge or a delete named so removes nothing, checked here).

Within an account, a service asks itself (ready?), and there every responder of the system
answers inboxes only (aitbc_runtime.bus.answerable): a request naming
`$JS.API.STREAM.PURGE.KV_aitbc_usage_counters` as its reply purges nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
from nats.aio.msg import Msg

from aitbc_contracts import messages as m
from aitbc_contracts import subjects as s
from aitbc_infra.bus_roles import ROLES
from aitbc_infra.bus_stores import STORES
from aitbc_infra.bus_streams import ADMINS, jetstream
from aitbc_infra.nats_server import NatsServer
from aitbc_keys.checks import KeyChecks
from aitbc_keys.db import create_engine
from aitbc_keys.responder import CheckResponder
from aitbc_runtime.broker import service_broker
from aitbc_runtime.bus import refused_replies, until_answered
from aitbc_usage.answering import answer_decisions
from aitbc_usage.handlers import Deciding
from aitbc_usage.plans import PlanBook
from tests.bus_clients import connected

EMPTY_CHECK = m.encoder.encode(m.CheckKeys([]))
EMPTY_DECISIONS = b'{"items": []}'


async def size(server: NatsServer, stream: str) -> int:
    """How many messages `stream` holds in its own account, as that account's admin sees."""
    account = STORES[stream].account
    async with connected(server, ADMINS[account]) as admin:
        return (await jetstream(admin, account).stream_info(stream)).state.messages


async def filled(server: NatsServer, role: str, bucket: str) -> int:
    """The role's bucket, made with a key in it; how many messages its stream holds."""
    async with connected(server, role) as nc:
        kv = await nc.jetstream().create_key_value(bucket=bucket)
        await kv.put("kept", b"1")
    return await size(server, f"KV_{bucket}")


async def settled(server: NatsServer) -> None:
    """Long enough for anything sent to have been acted on."""
    async with connected(server, "admin") as admin:
        await admin.flush()
    await asyncio.sleep(0.3)


async def test_an_answer_through_an_import_is_no_jetstream_request(own_nats: NatsServer) -> None:
    """An edge names its own account's JetStream API as the reply of a key check; a responder
    without the guard answers there. Nothing is purged or deleted (the edge may not, and
    its answers and JetStream's own do not count as API requests)."""
    async with connected(own_nats, "edge") as edge:
        await edge.jetstream().publish(s.usage_batch_subject(1), b"{}")
    sessions = await filled(own_nats, "edge", s.DASHBOARD_SESSIONS_BUCKET)
    streams = {s.USAGE_STREAM: 1, f"KV_{s.DASHBOARD_SESSIONS_BUCKET}": sessions}
    async with connected(own_nats, "keys") as answering, connected(own_nats, "edge") as edge:

        async def echo(msg: Msg) -> None:
            await answering.publish(msg.reply, b"{}")

        await answering.subscribe(s.KEYS_CHECK, cb=echo)
        await answering.flush()
        await until_answered(edge, s.KEYS_CHECK, EMPTY_CHECK)  # the import sees it: a moment
        assert (await edge.request(s.KEYS_CHECK, EMPTY_CHECK, timeout=5)).data == b"{}"
        for stream in streams:
            for change in ("PURGE", "DELETE"):
                reply = f"$JS.API.STREAM.{change}.{stream}"
                await edge.publish(s.KEYS_CHECK, EMPTY_CHECK, reply=reply)  # answered there
                await edge.publish(s.usage_batch_subject(2), b"{}", reply=reply)  # acked there
        await settled(own_nats)
    assert {stream: await size(own_nats, stream) for stream in streams} == {
        s.USAGE_STREAM: 1 + 4,  # the batches sent with those replies
        f"KV_{s.DASHBOARD_SESSIONS_BUCKET}": sessions,
    }


@dataclass
class Responder:
    name: str
    subject: str
    request: bytes
    start: Callable[[NatsServer, AsyncExitStack], Awaitable[None]]
    role: str  # the responder's, which asks itself too
    bucket: str  # of the role's account: what a purge named as the reply would empty


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


KEYS_LEASES, COUNTERS = s.KEYS_LEASES_BUCKET, s.USAGE_COUNTERS_BUCKET
RESPONDERS = [
    Responder("key checks", s.KEYS_CHECK, EMPTY_CHECK, start_check_responder, "keys", KEYS_LEASES),
    Responder(
        "usage decisions",
        s.usage_decide_subject(3),
        EMPTY_DECISIONS,
        start_decisions,
        "usage",
        COUNTERS,
    ),
    Responder("FastStream subscribers", s.USAGE_QUERY, b"{}", start_faststream, "usage", COUNTERS),
]


@pytest.mark.parametrize("responder", RESPONDERS, ids=lambda r: r.name)
async def test_every_responder_answers_inboxes_only(
    own_nats: NatsServer, responder: Responder
) -> None:
    before = await filled(own_nats, responder.role, responder.bucket)
    purge = f"$JS.API.STREAM.PURGE.KV_{responder.bucket}"
    assert ROLES[responder.role].responds
    refused = refused_replies.count
    async with AsyncExitStack() as stack:
        await responder.start(own_nats, stack)
        asking = await stack.enter_async_context(connected(own_nats, responder.role))
        answer = await asking.request(responder.subject, responder.request, timeout=5)
        assert answer.data  # an inbox: answered
        await asking.publish(responder.subject, responder.request, reply=purge)
        await settled(own_nats)
    assert refused_replies.count == refused + 1
    assert await size(own_nats, f"KV_{responder.bucket}") == before
