"""Composition root: settings -> engine (migrated) -> relay and broker; `aitbc-keys` runs it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from faststream.nats import NatsBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEY_EVENTS_SUBJECTS, KEYS_CHECK
from aitbc_keys.db import create_engine, migrate
from aitbc_keys.facts import FactsIndex, LiveIndex
from aitbc_keys.handlers import Handlers, subscribe
from aitbc_keys.relay import AfterPublish, Relay
from aitbc_keys.responder import CheckResponder
from aitbc_keys.settings import Settings, get_settings
from aitbc_runtime.broker import service_broker
from aitbc_runtime.bus import Follower, until_answered
from aitbc_runtime.process import run_service

log = logging.getLogger("aitbc_keys")


@dataclass
class Service:
    settings: Settings
    engine: AsyncEngine
    relay: Relay
    handlers: Handlers
    broker: NatsBroker
    checks: CheckResponder


def build_broker(settings: Settings, handlers: Handlers) -> NatsBroker:
    broker = service_broker(settings.nats_url, "aitbc-keys")
    subscribe(broker, handlers)
    return broker


@asynccontextmanager
async def running_service(
    settings: Settings | None = None,
    *,
    relay_poll_interval: float = 1.0,
    after_publish: AfterPublish | None = None,
) -> AsyncIterator[Service]:
    """The whole keys service in this process: migrated, relaying and answering on NATS."""
    settings = settings or get_settings()
    settings.ensure_data_dir()
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        relay = Relay(
            engine,
            settings.nats_url,
            poll_interval=relay_poll_interval,
            after_publish=after_publish,
        )
        index = FactsIndex()
        handlers = Handlers(engine, on_append=relay.wake, index=index)
        broker = build_broker(settings, handlers)
        checks = CheckResponder(handlers)
        relay.start()
        try:
            await broker.start()
            await checks.start(broker.connection)
            live = LiveIndex(engine, index)
            follower = Follower(
                broker.connection,
                KEY_EVENTS_SUBJECTS,
                lambda msg: live.on_data(msg.data),
                "keys-facts-index",
                on_reset=live.reload_soon,
            )
            follower.start()
            await live.load()
            await until_answered(broker.connection, KEYS_CHECK, m.encoder.encode(m.CheckKeys([])))
            try:
                log.info("keys service ready (NATS %s)", settings.nats_url)
                yield Service(settings, engine, relay, handlers, broker, checks)
            finally:
                await follower.stop()
                await live.stop()
                await checks.stop()  # drains: checks already taken get their replies
                await broker.stop()  # the same for commands
        finally:
            await relay.stop()
    finally:
        await engine.dispose()


def run() -> None:
    settings = get_settings()
    run_service(lambda: running_service(settings), "aitbc-keys", settings.log_level)
