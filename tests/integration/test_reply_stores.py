"""Every role against every store with subjects, by way of reply subjects: on a real
nats-server with the real configuration, nothing a role can make the server (JetStream or a
responder) send on its behalf is stored where the role may not write itself.

A client names any reply subject it likes, and the server cannot restrict it. So for each
role, every store's subject is named as the reply of each thing the role may do that gets an
answer: a publish into a store it writes (JetStream's PubAck), a JetStream API request it may
make (STREAM.INFO, and CONSUMER.MSG.NEXT where it pulls, which delivers the stream's messages
to the reply subject), and a request to a responder that answers whatever reply it is given
(a bare echo, without the guard of aitbc_runtime.bus.answerable). A store then holds a message
on that subject only if the role may publish there directly (its row in the table)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError

from aitbc_contracts import subjects as s
from aitbc_infra.bus_roles import ROLES, Role
from aitbc_infra.bus_stores import STORES
from aitbc_infra.bus_streams import ADMINS, jetstream
from aitbc_infra.nats_server import NatsServer
from tests.bus_clients import connected

# Each store with subjects, and the subject a forged message would be stored on there.
TARGETS = {
    s.KEY_EVENTS_STREAM: s.key_event_subject("acc_0000000000000000", "key_0000000000000000"),
    s.KEY_CHECKPOINTS_STREAM: f"{s.KEY_CHECKPOINTS_PREFIX}.forged",
    s.USAGE_STREAM: s.usage_batch_subject(7),
    f"KV_{s.USAGE_COUNTERS_BUCKET}": f"$KV.{s.USAGE_COUNTERS_BUCKET}.forged",
    f"KV_{s.USAGE_LEASES_BUCKET}": f"$KV.{s.USAGE_LEASES_BUCKET}.forged",
    f"KV_{s.KEYS_LEASES_BUCKET}": f"$KV.{s.KEYS_LEASES_BUCKET}.forged",
    f"KV_{s.DASHBOARD_SESSIONS_BUCKET}": f"$KV.{s.DASHBOARD_SESSIONS_BUCKET}.forged",
}
USERS = [role for role in ROLES.values() if not role.admin]
# Requests with a responder behind them: (subject, the responder's role).
SERVICES = (
    (s.KEYS_CHECK, "keys"),
    (s.KEYS_READ_COMMANDS, "keys"),
    (s.KEYS_OWNER_COMMANDS, "keys"),
    (s.usage_decide_subject(3), "usage"),
    (s.USAGE_QUERY, "usage"),
)


def matches(pattern: str, subject: str) -> bool:
    """Whether a NATS subject pattern (`*`, `>`) covers `subject`."""
    tokens, wanted = pattern.split("."), subject.split(".")
    for index, token in enumerate(tokens):
        if token == ">":
            return len(wanted) > index
        if index >= len(wanted) or token not in ("*", wanted[index]):
            return False
    return len(tokens) == len(wanted)


def may_publish(role: Role, subject: str) -> bool:
    return any(matches(pattern, subject) for pattern in role.publish)


def writable(role: Role) -> set[str]:
    """The stores the role may write by publishing on their subjects itself."""
    return {store for store, subject in TARGETS.items() if may_publish(role, subject)}


def test_every_store_with_subjects_is_tried() -> None:
    assert set(TARGETS) == set(STORES)
    assert all(matches(STORES[store].subjects, subject) for store, subject in TARGETS.items())


async def make_stores(server: NatsServer) -> None:
    """Every bucket, made by the role whose it is (the streams others mirror are there from
    the start), and the usage stream with a batch in it."""
    async with connected(server, "usage") as usage:
        js = usage.jetstream()
        await js.create_key_value(bucket=s.USAGE_COUNTERS_BUCKET)
        await js.create_key_value(bucket=s.USAGE_LEASES_BUCKET)
    async with connected(server, "keys") as keys:
        await keys.jetstream().create_key_value(bucket=s.KEYS_LEASES_BUCKET)
    async with connected(server, "edge") as edge:
        await edge.jetstream().create_key_value(bucket=s.DASHBOARD_SESSIONS_BUCKET)
        await edge.jetstream().publish(s.usage_batch_subject(1), b"{}")


async def stored(server: NatsServer) -> set[str]:
    """The stores holding a message on their forged subject."""
    found = set()
    for store, subject in TARGETS.items():
        account = STORES[store].account
        async with connected(server, ADMINS[account]) as nc:
            with contextlib.suppress(NotFoundError):
                await jetstream(nc, account).get_last_msg(store, subject)
                found.add(store)
    return found


async def answered(nc: NATS, subject: str, payload: bytes = b"{}") -> bool:
    """Whether the server (or a responder) answers this at all: a trick that gets no answer
    would prove nothing. (Subscribed to an inbox rather than asked with `request`: a pull's
    delivery keeps its stream subject, which nats-py's requests would not match.)"""
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox, max_msgs=1)
    await nc.publish(subject, payload, reply=inbox)
    try:
        await subscription.next_msg(timeout=5)
    except TimeoutError:
        return False
    return True


Trick = Callable[[NATS, str], Awaitable[None]]


def sending(subject: str, payload: bytes = b"{}") -> Trick:
    """Send `payload` on `subject` with the reply a trick names."""

    async def send(nc: NATS, reply: str) -> None:
        await nc.publish(subject, payload, reply=reply)

    return send


@dataclass
class Tricks:
    """What a role may send that gets an answer, each sent with a reply of our choosing."""

    role: Role
    server: NatsServer
    sent: list[str]

    async def publishes(self, nc: NATS) -> list[Trick]:
        tricks = []
        for store in sorted(writable(self.role)):
            subject = TARGETS[store].replace("forged", "own").replace(".7.", ".8.")
            assert await answered(nc, subject), f"no PubAck from {store}"
            self.sent.append(f"a publish into {store}")
            tricks.append(sending(subject))
        return tricks

    async def api_requests(self, nc: NATS) -> list[Trick]:
        tricks = []
        for pattern in self.role.publish:
            if pattern.startswith("$JS.API.STREAM.INFO."):
                assert await answered(nc, pattern), f"no answer to {pattern}"
                self.sent.append(pattern)
                tricks.append(sending(pattern, b""))
        return tricks

    async def pulls(self, nc: NATS) -> list[Trick]:
        """Each reply gets a durable consumer of its own: every one delivers the first batch."""
        stream = s.USAGE_STREAM
        if not may_publish(self.role, f"$JS.API.CONSUMER.MSG.NEXT.{stream}.x"):
            return []
        async with asyncio.timeout(10):  # the batch has reached the role's mirror
            while (await nc.jetstream().stream_info(stream)).state.messages == 0:
                await asyncio.sleep(0.02)
        names = [f"forger{n}" for n in range(len(TARGETS) + 1)]
        for name in names:
            await nc.jetstream().add_consumer(stream, ConsumerConfig(durable_name=name))
        unused = iter(names)
        next_of = f"$JS.API.CONSUMER.MSG.NEXT.{stream}"
        assert await answered(nc, f"{next_of}.{next(unused)}", b'{"batch": 1}')
        self.sent.append("CONSUMER.MSG.NEXT")

        async def pull(nc: NATS, reply: str) -> None:
            await nc.publish(f"{next_of}.{next(unused)}", b'{"batch": 1}', reply=reply)

        return [pull]

    async def requests(self, nc: NATS, answering: contextlib.AsyncExitStack) -> list[Trick]:
        """Requests to a responder that answers any reply subject (no guard)."""
        tricks = []
        for subject, responder in SERVICES:
            if not may_publish(self.role, subject):
                continue
            echo = await answering.enter_async_context(connected(self.server, responder))

            async def answer(msg: Msg, echo: NATS = echo) -> None:
                await echo.publish(msg.reply, b'{"forged": true}')

            await echo.subscribe(subject, cb=answer)
            await echo.flush()
            assert await answered(nc, subject), f"no answer on {subject}"
            self.sent.append(f"a request on {subject}")
            tricks.append(sending(subject))
        return tricks


@pytest.mark.parametrize("role", USERS, ids=lambda role: role.name)
async def test_a_reply_subject_stores_nothing_where_the_role_may_not_write(
    own_nats: NatsServer, role: Role
) -> None:
    await make_stores(own_nats)
    assert await stored(own_nats) == set()
    tricks = Tricks(role, own_nats, [])
    async with contextlib.AsyncExitStack() as answering:
        nc = await answering.enter_async_context(connected(own_nats, role.name))
        every = [
            *await tricks.publishes(nc),
            *await tricks.api_requests(nc),
            *await tricks.pulls(nc),
            *await tricks.requests(nc, answering),
        ]
        for trick in every:
            for target in TARGETS.values():
                await trick(nc, target)
        await nc.flush()
        await asyncio.sleep(0.5)  # long enough for anything sent to have been stored
    assert tricks.sent, f"{role.name} has no trick to try"
    found = await stored(own_nats)
    assert found >= writable(role), "where the role may write, the tricks are stored (not vacuous)"
    forged = found - writable(role)
    assert forged == set(), f"{role.name} stored into {sorted(forged)} by {tricks.sent}"
