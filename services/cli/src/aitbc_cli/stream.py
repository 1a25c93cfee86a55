"""Reading the key event stream (or the checkpoints' stream) fast: one ephemeral push consumer,
no acks, flow-controlled.

nats-py's ordered consumer does the same with more bookkeeping per message; a replay reads
every message once and stops, so a plain subscription on the consumer's inbox is enough.
The consumer sequence in each message's reply subject shows any message lost on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from aitbc_cli import bus
from aitbc_cli.bus import BusError
from aitbc_contracts.subjects import KEY_EVENTS_PREFIX, KEY_EVENTS_STREAM
from aitbc_runtime.bus_access import BusAccess

STATUS = "Status"
CONTROL = "100"  # flow control requests and idle heartbeats
STALLED = "Nats-Consumer-Stalled"
LAST_CONSUMER_SEQ = "Nats-Last-Consumer"
HEARTBEAT = 2.0  # seconds between the server's heartbeats while it has nothing to send

# (stream sequence, subject, payload, headers) of each message, in stream order
Sink = Callable[[int, str, bytes, dict[str, str] | None], None]


class ReplayClient(NATS):
    """nats-py's client with a leaner header parser: a replay parses every message's headers,
    and nats-py's own (which also vets header names character by character) is a third of the
    cost. Should nats-py rename the method, its own parser runs: slower, never wrong."""

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if sep:
                out[name.strip().decode("ascii", "replace")] = value.strip().decode(
                    "utf-8", "replace"
                )
        return out


async def connect(access: BusAccess, wait: float) -> NATS:
    return await bus.connect(access, wait, client=ReplayClient())


def event_filter(account_id: str | None = None, key_id: str | None = None) -> str:
    """The subject filter for an account's events, a key's (its stream id), or every event."""
    return f"{KEY_EVENTS_PREFIX}.{account_id or '*'}.{key_id or '*'}"


@dataclass
class Read:
    messages: int = 0
    last_sequence: int = 0  # the stream's last sequence before reading: its tail, for verify


def _ack_fields(reply: str) -> tuple[int, int, int]:
    """(stream sequence, consumer sequence, pending) from a JetStream ack subject."""
    tokens = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(tokens[5]), int(tokens[6]), int(tokens[8])
    # $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>...
    return int(tokens[7]), int(tokens[8]), int(tokens[10])


class _Replay:
    """One read's progress: each message to the sink in order, and `done` once the last one came,
    or with the error that ended the read (a message lost on the way, a failing sink)."""

    def __init__(self, nc: NATS, sink: Sink, result: Read) -> None:
        self._nc = nc
        self._sink = sink
        self._result = result
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        self._next_cseq = 1  # the consumer sequence the next message must have
        self.last_seen = self._loop.time()

    def fail(self, message: str) -> None:
        if not self.done.done():
            self.done.set_exception(BusError(message))

    async def on_message(self, msg: Msg) -> None:
        headers = msg.headers
        if headers is not None and headers.get(STATUS) == CONTROL:
            await self._control(msg.reply or headers.get(STALLED), headers)
        elif not self.done.done():
            self._deliver(msg)

    async def _control(self, answer: str | None, headers: dict[str, str]) -> None:
        if answer:  # flow control: the server sends more once we answer
            await self._nc.publish(answer, b"")
        # A heartbeat names the last message sent: one we never saw was lost on the way.
        sent = headers.get(LAST_CONSUMER_SEQ, "")
        if sent.isdecimal() and int(sent) >= self._next_cseq:
            self.fail(f"the replay lost messages ({self._next_cseq}..{sent}); run it again")

    def _deliver(self, msg: Msg) -> None:
        self.last_seen = self._loop.time()
        sseq, cseq, pending = _ack_fields(msg.reply)
        if cseq != self._next_cseq:
            self.fail(f"the replay lost messages ({self._next_cseq}..{cseq - 1}); run it again")
            return
        self._next_cseq += 1
        self._result.messages += 1
        try:
            self._sink(sseq, msg.subject, msg.data, msg.headers)
        except Exception as exc:  # nats-py would swallow it: end the read with it instead
            self.done.set_exception(exc)
            return
        if pending == 0:
            self.done.set_result(None)

    async def finish(self, stall: float) -> None:
        """Until the last message came; fails if the stream sends nothing for `stall` seconds."""
        while not self.done.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.done), stall)
            if not self.done.done() and self._loop.time() - self.last_seen > stall:
                self.fail(f"the stream sent no event for {stall:g} s; run it again")
        self.done.result()


def _consumer(inbox: str, subjects: str, stall: float) -> ConsumerConfig:
    """An ephemeral push consumer of every matching message, unacknowledged, flow-controlled."""
    return ConsumerConfig(
        deliver_subject=inbox,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE,
        filter_subject=subjects,
        flow_control=True,
        idle_heartbeat=HEARTBEAT,
        mem_storage=True,
        num_replicas=1,
        inactive_threshold=stall,  # the server removes it if we vanish
    )


async def read(
    nc: NATS, subjects: str, sink: Sink, stall: float = 10.0, name: str = KEY_EVENTS_STREAM
) -> Read:
    """Hand every message of the stream `name` (the key event stream unless said otherwise)
    matching `subjects` to `sink`, in order."""
    js = nc.jetstream(timeout=stall)
    try:
        info = await js.stream_info(name)
    except NotFoundError as exc:
        raise BusError(f"there is no {name} stream (has the keys service run?)") from exc
    result = Read(last_sequence=info.state.last_seq)
    if info.state.messages == 0:
        return result
    replay = _Replay(nc, sink, result)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=replay.on_message)
    consumer = None
    try:
        consumer = await js.add_consumer(name, _consumer(inbox, subjects, stall))
        delivered = consumer.delivered.consumer_seq if consumer.delivered else 0
        if consumer.num_pending or delivered:  # else nothing matches
            await replay.finish(stall)
        return result
    finally:
        await sub.unsubscribe()
        if consumer is not None:
            with contextlib.suppress(Exception):  # it expires by itself anyway
                await js.delete_consumer(name, consumer.name)
