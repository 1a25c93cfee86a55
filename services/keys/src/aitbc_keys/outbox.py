"""The transactional outbox relay: committed events, in position order, onto the JetStream log.

The events table is the outbox and the JetStream stream is the relay's only cursor: the last
event of ours in it says where to resume. "Ours" is checked, not assumed: a message is ours when
its position header names a stored event whose bytes and chain hash it carries. Anything else
(a `{}`, a garbled or forged event) is foreign: the relay walks back past it to the last event
of ours and resumes after it; the foreign messages stay (only an admin may delete them) and
every reader refuses them. Every publish carries the stream sequence the relay expects to
follow (the stream's real last one, foreign or not), so a second relay, a restarted one, or a
publish retried after a reconnect can never interleave or duplicate events: the server refuses
it and the relay re-reads the stream. `Nats-Msg-Id` de-duplication covers a publish whose ack
was lost. Each message is the event's stored bytes, verbatim (they are what the hash chain
covers), with its chain hash in a header. It publishes on the connection it is given (the
keys service's writer's), which reconnects by itself; the relay only re-reads the stream after
a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.events import AnyEvent, decode_event
from aitbc_contracts.subjects import (
    EXPECTED_LAST_SEQUENCE_HEADER,
    HASH_HEADER,
    KEY_EVENTS_STREAM,
    KEY_EVENTS_SUBJECTS,
    MSG_ID_HEADER,
    POSITION_HEADER,
    key_event_subject,
)
from aitbc_keys import lost_commits, store
from aitbc_keys.background import WokenLoop
from aitbc_keys.metrics import RELAY_LAG, RELAY_PUBLISH_FAILURES

log = logging.getLogger(__name__)

WRONG_LAST_SEQUENCE = 10071  # JetStream API error code
STREAM_NAME_IN_USE = 10058  # the stream exists with another configuration
DUPLICATE_WINDOW = 120.0  # seconds

AfterPublish = Callable[[int, AnyEvent], Awaitable[None]]


def stream_config(duplicate_window: float = DUPLICATE_WINDOW, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=KEY_EVENTS_STREAM,
        subjects=[KEY_EVENTS_SUBJECTS],
        storage=StorageType.FILE,
        duplicate_window=duplicate_window,
        num_replicas=replicas,
    )


async def ensure_stream(
    js: JetStreamContext, duplicate_window: float = DUPLICATE_WINDOW, replicas: int = 1
) -> None:
    """Create the key event stream while it is missing (with `replicas`), or give it this
    duplicate window."""
    await ensure(js, stream_config(duplicate_window, replicas))


# What the keys service itself sets on the streams it writes; the rest (replicas, storage,
# limits) is the bus's: aitbc_infra.bus_streams makes them, `--replicas 3` in a cluster, and
# brings an existing stream's replicas to that number. The service gives a stream it makes
# again (an admin deleted it) its NATS_REPLICAS.
OWN_SETTINGS = ("subjects", "duplicate_window")


async def ensure(js: JetStreamContext, config: StreamConfig) -> None:
    """Create a stream the keys service writes while it is missing (an admin deleted it); an
    existing one keeps what the bus made it with, its replicas above all, and takes this
    service's own settings where they differ."""
    try:
        await js.add_stream(config)
        return
    except BadRequestError as exc:
        if exc.err_code != STREAM_NAME_IN_USE:  # it exists with other settings
            raise
    assert config.name is not None  # each of its configurations names its stream
    found = (await js.stream_info(config.name)).config
    wanted = {n: getattr(config, n) for n in OWN_SETTINGS if getattr(config, n) is not None}
    if any(getattr(found, name) != value for name, value in wanted.items()):
        await js.update_stream(replace(found, **wanted))


class _Resync(Exception):
    """The stream moved on without us (another relay, a lost ack): read it again."""


class _HookFault(Exception):
    """The test fault hook raised: stop as if the process had died at that point."""


class OutboxRelay(WokenLoop):
    """Publishes events from the store to JetStream, exactly once and in order."""

    def __init__(
        self,
        engine: AsyncEngine,
        nc: NatsClient,
        *,
        poll_interval: float = 1.0,
        batch_size: int = 500,
        publish_timeout: float = 5.0,
        after_publish: AfterPublish | None = None,
        duplicate_window: float = DUPLICATE_WINDOW,
        replicas: int = 1,  # of the stream, if it must make it
    ) -> None:
        super().__init__("aitbc-keys-relay", grace=publish_timeout)
        self.engine = engine
        self.nc = nc
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.publish_timeout = publish_timeout
        self.duplicate_window = duplicate_window
        self.replicas = replicas
        # Fault hook for tests: runs after each publish, before the relay advances its cursor;
        # an exception raised by it ends run(), like a crash at the worst moment.
        self.after_publish = after_publish
        self.published = 0  # messages the stream accepted from this relay
        self.position: int | None = None  # last position known to be in the stream
        self._in_stream = 0  # the same, kept while `position` is None (for the lag)
        self._last_seq = 0
        self._js = nc.jetstream(timeout=publish_timeout)
        self._offered: list[store.Record] = []  # committed here, not yet published

    def offer(self, records: Sequence[store.Record]) -> None:
        """Events this process has just committed, as stored: published as they are once
        they follow what is in the stream, without reading them back (a revocation reaches
        the edges that much sooner). The store has them too: what is offered is never the
        only way to them, so a backlog (the stream away) is dropped rather than kept."""
        if len(self._offered) >= self.batch_size:
            self._offered = []
        self._offered.extend(records)
        self.wake()

    def start(self) -> asyncio.Task[None]:
        self.position = None  # another relay may have published meanwhile: read the stream
        return super().start()

    async def stop(self) -> None:
        await super().stop()
        RELAY_LAG.set(0)  # no longer this process's to relay (its successor says its own)

    async def run(self) -> None:
        """Relay until stopped; NATS and database failures are logged and retried."""
        backoff = 0.05
        while not self._stopping:
            try:
                if self.position is None:
                    await self._sync(self._js)
                self._wake.clear()
                published = await self._drain(self._js)
                backoff = 0.05
                if not published:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except _Resync:
                log.info("key event stream moved on; re-reading its last message")
                RELAY_PUBLISH_FAILURES.inc()
                self.position = None
            except _HookFault as fault:
                raise fault.__cause__ or fault from None
            except Exception as exc:
                log.warning("relay error, retrying in %.2fs: %r", backoff, exc)
                RELAY_PUBLISH_FAILURES.inc()
                self.position = None
                await self._measure_lag()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _sync(self, js: JetStreamContext) -> None:
        """Resume after the last event of ours in the stream (0 for an empty stream), and
        expect the stream's real last sequence, whoever's message holds it."""
        # The stream may have been deleted while we were away: recreate it and refill it.
        await ensure_stream(js, self.duplicate_window, self.replicas)
        # Or the database lost commits the stream holds: take them back before relaying more
        # after them, which would fork the log.
        await lost_commits.take_back(self.engine, js)
        info = await js.stream_info(KEY_EVENTS_STREAM)
        self._last_seq = info.state.last_seq
        self.position = 0
        foreign = 0
        held = range(info.state.last_seq, info.state.first_seq - 1, -1)
        for sequence in held if info.state.messages else ():
            position = await self._ours(js, sequence)
            if position is not None:
                self.position = position
                break
            foreign += 1
        if foreign:
            log.warning(
                "key event stream: %d message(s) after position %d are not events of ours "
                "(readers refuse them; only an admin may remove them)",
                foreign,
                self.position,
            )
        log.info(
            "relay resumes after position %d (stream sequence %d)", self.position, self._last_seq
        )
        self._in_stream = self.position

    async def _measure_lag(self) -> None:
        """The lag while the relay cannot publish: what the store holds past what it last
        knew to be in the stream (the database may be away too: then it stays as it was)."""
        with contextlib.suppress(Exception):
            RELAY_LAG.set(await store.last_position(self.engine) - self._in_stream)

    async def _ours(self, js: JetStreamContext, sequence: int) -> int | None:
        """The position of the message at `sequence` if it is an event as we published it
        (the stored bytes and chain hash of its position); None for anything else."""
        try:
            msg = await js.get_msg(KEY_EVENTS_STREAM, seq=sequence)
        except NotFoundError:
            return None  # removed
        try:
            position = int((msg.headers or {}).get(POSITION_HEADER, ""))
        except ValueError:
            return None
        records = await store.records_after(self.engine, position - 1, 1)
        if not records or records[0].position != position:
            return None
        record = records[0]
        if msg.data != record.data or (msg.headers or {}).get(HASH_HEADER) != record.chain_hash:
            return None
        return position

    async def _drain(self, js: JetStreamContext) -> int:
        """Publish everything committed after our position; returns how many were sent."""
        sent = 0
        while not self._stopping:
            assert self.position is not None
            batch = self._next_offered(self.position)
            if not batch:
                batch = await store.records_after(self.engine, self.position, self.batch_size)
            if not batch:
                RELAY_LAG.set(0)
                return sent
            head = batch[-1].position  # the last committed one, unless the batch is full
            if len(batch) == self.batch_size:
                head = await store.last_position(self.engine)
            for record in batch:
                await self._publish(js, record)
                sent += 1
                if self.after_publish is not None:
                    try:
                        await self.after_publish(record.position, decode_event(record.data))
                    except BaseException as exc:
                        raise _HookFault from exc
                self.position = self._in_stream = record.position
                RELAY_LAG.set(head - record.position)
        return sent

    def _next_offered(self, position: int) -> list[store.Record]:
        """The offered records that follow `position` without a gap (a gap: another process
        committed between them, and the store has it); those at or below it are let go."""
        run: list[store.Record] = []
        for record in sorted(self._offered):  # commits may be offered out of their order
            if record.position == position + len(run) + 1:
                run.append(record)
        after = position + len(run)
        self._offered = [record for record in self._offered if record.position > after]
        return run

    async def _publish(self, js: JetStreamContext, record: store.Record) -> None:
        headers = {
            MSG_ID_HEADER: record.event_id,
            POSITION_HEADER: str(record.position),
            HASH_HEADER: record.chain_hash,
            EXPECTED_LAST_SEQUENCE_HEADER: str(self._last_seq),
        }
        try:
            ack = await js.publish(
                key_event_subject(record.account_id, record.stream_id),
                record.data,
                timeout=self.publish_timeout,
                stream=KEY_EVENTS_STREAM,
                headers=headers,
            )
        except BadRequestError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise _Resync from exc
            raise
        if ack.duplicate:
            # Already in the stream (a lost ack, or another relay): our expected sequence is
            # unchanged, so if the stream did move on, the next publish is refused and we resync.
            return
        self._last_seq = ack.seq
        self.published += 1
