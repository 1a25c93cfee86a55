"""Composition root: settings -> engine (migrated) -> one NATS connection (the broker's) for the
command endpoint, the key checks, the facts index's stream reader and the relay's lease, and the
writer's for the outbox relay and the checkpoints (run by the lease's holder alone: see
aitbc_keys.writing) and the news of commits between keys processes; and the operators' listener
(/metrics, aitbc_keys.metrics) when KEYS_METRICS_PORT is set. `aitbc-keys` runs it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEYS_CHECK
from aitbc_keys import lost_commits
from aitbc_keys.checkpoints import Checkpointer
from aitbc_keys.checks import KeyChecks
from aitbc_keys.commits import CommitNews, telling
from aitbc_keys.db import create_engine, migrate
from aitbc_keys.domain import Clock, utcnow
from aitbc_keys.entrypoint import CommandEndpoint, subscribe
from aitbc_keys.facts import FactsIndex, LiveFacts
from aitbc_keys.outbox import AfterPublish, OutboxRelay
from aitbc_keys.responder import CheckResponder
from aitbc_keys.settings import Settings, get_settings
from aitbc_keys.writing import Writing, leased
from aitbc_runtime.broker import service_broker
from aitbc_runtime.bus import connect, until_answered
from aitbc_runtime.checkpoint_keys import CheckpointSigner
from aitbc_runtime.key_events import KeyEventReader
from aitbc_runtime.metrics import metrics_listener
from aitbc_runtime.ownership import Ownership
from aitbc_runtime.process import run_service

log = logging.getLogger("aitbc_keys")


@dataclass
class Service:
    settings: Settings
    engine: AsyncEngine
    relay: OutboxRelay  # runs while this process holds the lease `relay` (writing.running)
    commands: CommandEndpoint
    checks: KeyChecks
    index: FactsIndex
    broker: NatsBroker
    responder: CheckResponder
    reader: KeyEventReader  # the facts index's, on the key event stream
    writing: Writing
    ownership: Ownership  # of the lease `relay`
    news: CommitNews  # what this process and the others commit, told to each other
    checkpointer: Checkpointer | None = None  # None: no checkpoint key file set


@asynccontextmanager
async def running_service(
    settings: Settings | None = None,
    *,
    relay_poll_interval: float = 1.0,
    after_publish: AfterPublish | None = None,
    clock: Clock = utcnow,
) -> AsyncIterator[Service]:
    """The whole keys service in this process: migrated, answering on NATS, and relaying while
    it holds the relay's lease; commands are decided and checks answered at `clock()`. It stops
    in the reverse order: nothing answered any more, then the relay handed over, the buses."""
    settings = settings or get_settings()
    settings.ensure_data_dir()
    signer = checkpoint_signer(settings)  # first: a key that cannot be used stops the start
    async with AsyncExitStack() as stack:
        engine = create_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        await migrate(engine)
        broker, nc, writer = await stack.enter_async_context(buses(settings))
        await take_back_lost_commits(engine, writer)  # before the read models are read
        relay = OutboxRelay(
            engine, writer, poll_interval=relay_poll_interval, after_publish=after_publish,
            replicas=settings.writer.replicas,
        )  # fmt: skip
        checkpointer = checkpoints(settings, engine, writer, signer, clock) if signer else None
        writing = Writing(relay, checkpointer)
        lease = leased(writing, nc, settings.lease_seconds, settings.nats.replicas)
        ownership = await stack.enter_async_context(lease)
        index = FactsIndex()
        news = await stack.enter_async_context(telling(CommitNews(writer, index, writing)))
        live = LiveFacts(engine, index)
        commands = CommandEndpoint(
            engine, index=live, on_commit=news.committed, clock=clock,
            max_keys=settings.max_keys_per_account, told=news.told, kinds=index.kind_of,
        )  # fmt: skip
        subscribe(broker, commands)
        checks = KeyChecks(engine, index, clock)
        responder = CheckResponder(checks)
        reader = KeyEventReader(nc, [live], "keys-facts-index")
        await stack.enter_async_context(answering(broker, nc, responder, reader, live))
        await stack.enter_async_context(
            metrics_listener(settings.metrics_host, settings.metrics_port)
        )
        log.info("keys service ready (NATS %s)", settings.nats.where())
        yield Service(
            settings, engine, relay, commands, checks, index, broker, responder, reader,
            writing, ownership, news, checkpointer,
        )  # fmt: skip


async def take_back_lost_commits(engine: AsyncEngine, writer: NatsClient) -> None:
    """Events the stream holds that the database lost (aitbc_keys.lost_commits), back in the
    store before the facts index loads from it. The bus may not answer yet: the relay tries
    again each time it reads the stream."""
    try:
        await lost_commits.take_back(engine, writer.jetstream())
    except Exception as exc:
        log.warning("could not compare the store with the key event stream yet: %r", exc)


@asynccontextmanager
async def buses(settings: Settings) -> AsyncIterator[tuple[NatsBroker, NatsClient, NatsClient]]:
    """The broker, its connection, and the writer's (the relay's and the checkpoints')."""
    writer = await connect(settings.writer, "aitbc-keys-writer")
    broker = service_broker(settings.nats, "aitbc-keys")
    try:
        yield broker, await broker.connect(), writer
    finally:
        await writer.drain()
        await broker.stop()


@asynccontextmanager
async def answering(
    broker: NatsBroker,
    nc: NatsClient,
    responder: CheckResponder,
    reader: KeyEventReader,
    live: LiveFacts,
) -> AsyncIterator[None]:
    """Commands and checks answered, the facts index loaded and kept live, until it ends."""
    await broker.start()
    await responder.start(nc)
    reader.start()
    await live.load()
    await until_answered(nc, KEYS_CHECK, m.encoder.encode(m.CheckKeys([])))
    try:
        yield
    finally:
        await reader.stop()
        await live.stop()
        await responder.stop()  # drains: checks already taken get their replies
        for subscriber in broker.subscribers:
            await subscriber.stop()  # the same for commands


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
