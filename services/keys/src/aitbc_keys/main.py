"""Composition root: settings -> engine (migrated) -> one NATS connection (the broker's) for the
command endpoint, the key checks and the facts index's stream reader, and the writer's for the
outbox relay and the checkpoints; `aitbc-keys` runs it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEYS_CHECK
from aitbc_keys.checkpoints import Checkpointer
from aitbc_keys.checks import KeyChecks
from aitbc_keys.db import create_engine, migrate
from aitbc_keys.domain import Clock, utcnow
from aitbc_keys.entrypoint import CommandEndpoint, subscribe
from aitbc_keys.facts import FactsIndex, LiveFacts
from aitbc_keys.outbox import AfterPublish, OutboxRelay
from aitbc_keys.responder import CheckResponder
from aitbc_keys.settings import Settings, get_settings
from aitbc_runtime.broker import service_broker
from aitbc_runtime.bus import connect, until_answered
from aitbc_runtime.checkpoint_keys import CheckpointSigner
from aitbc_runtime.key_events import KeyEventReader
from aitbc_runtime.process import run_service

log = logging.getLogger("aitbc_keys")


@dataclass
class Service:
    settings: Settings
    engine: AsyncEngine
    relay: OutboxRelay
    commands: CommandEndpoint
    checks: KeyChecks
    index: FactsIndex
    broker: NatsBroker
    responder: CheckResponder
    reader: KeyEventReader  # the facts index's, on the key event stream
    checkpointer: Checkpointer | None = None  # None: no checkpoint key file set


@asynccontextmanager
async def running_service(
    settings: Settings | None = None,
    *,
    relay_poll_interval: float = 1.0,
    after_publish: AfterPublish | None = None,
    clock: Clock = utcnow,
) -> AsyncIterator[Service]:
    """The whole keys service in this process: migrated, relaying and answering on NATS;
    commands are decided and checks answered at `clock()`."""
    settings = settings or get_settings()
    settings.ensure_data_dir()
    signer = checkpoint_signer(settings)  # first: a key that cannot be used stops the start
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        writer = await connect(settings.writer, "aitbc-keys-writer")
        broker = service_broker(settings.nats, "aitbc-keys")
        nc = await broker.connect()
        relay = OutboxRelay(
            engine,
            writer,
            poll_interval=relay_poll_interval,
            after_publish=after_publish,
            replicas=settings.writer.replicas,
        )
        checkpointer = checkpoints(settings, engine, writer, signer, clock) if signer else None
        writing = Writing(relay, checkpointer)
        index = FactsIndex()
        live = LiveFacts(engine, index)
        commands = CommandEndpoint(
            engine,
            index=live,
            on_commit=writing.wake,
            clock=clock,
            max_keys=settings.max_keys_per_account,
        )
        subscribe(broker, commands)
        checks = KeyChecks(engine, index, clock)
        responder = CheckResponder(checks)
        reader = KeyEventReader(nc, [live], "keys-facts-index")
        writing.start()
        try:
            await broker.start()
            await responder.start(nc)
            reader.start()
            await live.load()
            await until_answered(nc, KEYS_CHECK, m.encoder.encode(m.CheckKeys([])))
            try:
                log.info("keys service ready (NATS %s)", settings.nats.where())
                yield Service(
                    settings, engine, relay, commands, checks, index, broker, responder, reader,
                    checkpointer,
                )  # fmt: skip
            finally:
                await reader.stop()
                await live.stop()
                await responder.stop()  # drains: checks already taken get their replies
                for subscriber in broker.subscribers:
                    await subscriber.stop()  # the same for commands
        finally:
            await writing.stop()  # before the connection it publishes on is closed
            await writer.drain()
            await broker.stop()
    finally:
        await engine.dispose()


@dataclass
class Writing:
    """What the writer connection publishes after each commit: the events, and the signed
    checkpoints of the chain head (when a key is set)."""

    relay: OutboxRelay
    checkpointer: Checkpointer | None

    def wake(self) -> None:
        self.relay.wake()
        if self.checkpointer is not None:
            self.checkpointer.wake()

    def start(self) -> None:
        self.relay.start()
        if self.checkpointer is not None:
            self.checkpointer.start()

    async def stop(self) -> None:
        await self.relay.stop()
        if self.checkpointer is not None:
            await self.checkpointer.stop()


def checkpoint_signer(settings: Settings) -> CheckpointSigner | None:
    """The key in the settings' key file (None: no file set, no checkpoints)."""
    if not settings.checkpoint_key_file:
        log.warning("no KEYS_CHECKPOINT_KEY_FILE: the key event log is not checkpointed")
        return None
    signer = CheckpointSigner.from_file(settings.checkpoint_key_file)
    log.info("checkpoints signed by key %s", signer.key_id)
    return signer


def checkpoints(
    settings: Settings,
    engine: AsyncEngine,
    writer: NatsClient,
    signer: CheckpointSigner,
    clock: Clock,
) -> Checkpointer:
    return Checkpointer(
        engine,
        writer,
        signer,
        every_events=settings.checkpoint_every_events,
        every_seconds=settings.checkpoint_every_seconds,
        clock=clock,
        replicas=settings.writer.replicas,
    )


def run() -> None:
    settings = get_settings()
    run_service(lambda: running_service(settings), "aitbc-keys", settings.log_level)
