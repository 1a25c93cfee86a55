"""Fixtures for the keys service tests: a migrated database, a private nats-server, the service
in-process with a caller, helpers."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.events import AnyEvent, KeyCreated, KeyRevoked
from aitbc_contracts.subjects import POSITION_HEADER
from aitbc_infra.nats_server import NatsServer
from aitbc_keys.db import create_engine, migrate
from aitbc_keys.main import Service, running_service
from aitbc_runtime.bus_access import BusAccess
from tests.bus import keys_settings
from tests.integration.keys.caller import Caller, Clock
from tests.integration.keys.helpers import Connect
from tests.key_stream import key_stream

_counter = itertools.count(1)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated keys database (SQLite file, then PostgreSQL)."""
    engine = create_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


def key_history(n: int, stream: str | None = None, account: str = "acc_1") -> list[AnyEvent]:
    """A key stream of n events: created, then n-1 revocations (facts; the store doesn't judge)."""
    stream = stream or f"key_{uuid.uuid4().hex[:16]}"
    now = datetime.now(UTC)
    out: list[AnyEvent] = [
        KeyCreated(
            event_id=uuid.uuid4().hex,
            stream_id=stream,
            version=1,
            account_id=account,
            occurred_at=now,
            key_id=stream,
            name="k",
            kind="standard",
            secret_hash=uuid.uuid4().hex * 2,
            hint="aitbc_abcd",
        )
    ]
    for version in range(2, n + 1):
        out.append(
            KeyRevoked(
                event_id=uuid.uuid4().hex,
                stream_id=stream,
                version=version,
                account_id=account,
                occurred_at=now,
                key_id=stream,
                reason=f"r{next(_counter)}",
            )
        )
    return out


async def read_stream(access: BusAccess) -> list[tuple[int, str, int]]:
    """Every message of the key event stream: (stream sequence, event id, position header)."""
    return [
        (m.sequence, m.headers["Nats-Msg-Id"], int(m.headers[POSITION_HEADER]))
        for m in await key_stream(access)
    ]


@pytest.fixture
def history_of():  # type: ignore[no-untyped-def]
    """key_history, for tests: (n, stream=None, account="acc_1") -> events of one key stream."""
    return key_history


@pytest.fixture
def stream_contents():  # type: ignore[no-untyped-def]
    """read_stream, for tests: (bus access) -> [(sequence, event id, position)]."""
    return read_stream


@pytest.fixture
def auditor(own_nats: NatsServer) -> BusAccess:
    """How a test reads what the key event stream holds: as an auditor, who may only read."""
    return own_nats.access("auditor")


@pytest.fixture
async def connect(own_nats: NatsServer) -> AsyncIterator[Connect]:
    """New NATS connections as the keys service's event publisher's (role keys-writer,
    reconnecting for ever), closed after the test."""
    opened: list[Client] = []
    writer = own_nats.options("keys-writer")

    async def new() -> Client:
        nc = await nats.connect(**writer, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        opened.append(nc)
        return nc

    yield new
    for nc in opened:
        await nc.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def keys_service(
    database_url: str, own_nats: NatsServer, clock: Clock
) -> AsyncIterator[Service]:
    """The keys service in-process, on the test's clock."""
    settings = keys_settings(own_nats, database_url=database_url)
    # A 30 s poll: events must reach the stream because appends wake the relay.
    async with running_service(settings, relay_poll_interval=30, clock=clock) as svc:
        yield svc


@pytest.fixture
async def caller(keys_service: Service, own_nats: NatsServer) -> AsyncIterator[Caller]:
    nc = await nats.connect(**own_nats.options())  # an operator: it sends operator commands
    yield Caller(nc)
    await nc.close()


@pytest.fixture
async def admin(own_nats: NatsServer) -> AsyncIterator[Client]:
    """An operator's connection (role `admin`): operator commands, and the readers' mirror of
    the key event log."""
    nc = await nats.connect(**own_nats.options("admin"))
    yield nc
    await nc.close()


@pytest.fixture
async def keylog(own_nats: NatsServer) -> AsyncIterator[Client]:
    """The key log's own admin (role `keylog-admin`): besides the keys service's writer, the
    only role that can put a message in the key event log (tests/integration/keys/foreign.py)."""
    nc = await nats.connect(**own_nats.options("keylog-admin"))
    yield nc
    await nc.close()
