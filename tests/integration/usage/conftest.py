"""Fixtures for the usage service tests: it and the keys service in-process, on a private NATS."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import nats
import pytest
from nats.aio.client import Client as NATS

from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint
from aitbc_contracts.subjects import KEYS_OPERATOR_COMMANDS
from aitbc_contracts.usage import WINDOW_SECONDS
from aitbc_infra.nats_server import NatsServer
from aitbc_keys.main import running_service as running_keys
from aitbc_usage.main import Service
from aitbc_usage.main import running_service as running_usage
from aitbc_usage.settings import Settings as UsageSettings
from tests.bus import keys_settings

T = TypeVar("T")


@dataclass
class System:
    """The keys service running, and the usage service's settings on the same bus. `edge`
    connects as the edge does (decisions, usage batches, queries); `operator` as an admin, for
    what the test does beyond any service's role: accounts and plans made by command, spying on
    subjects, and events published in a format no role may publish any more."""

    nats: NatsServer
    operator: NATS
    edge: NATS
    usage_settings: UsageSettings

    def usage(self, **changes: object) -> AbstractAsyncContextManager[Service]:
        return running_usage(replace(self.usage_settings, **changes))

    async def create_account(self, plan: str = "free") -> str:
        key = generate_key()
        command = m.CreateAccount(
            master_key_hash=hash_key(key), master_key_hint=hint(key), plan=plan
        )  # type: ignore[arg-type]
        reply = await self.operator.request(
            KEYS_OPERATOR_COMMANDS, m.encoder.encode(command), timeout=5
        )
        view = m.reply_decoder.decode(reply.data)
        assert isinstance(view, m.AccountView)
        return view.account_id


@pytest.fixture
def usage_database_url(tmp_path: Path) -> str:
    """The usage service's database: SQLite here; the tests of the aggregates, which live in
    it, take `database_url` instead, PostgreSQL too."""
    return f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}"


@pytest.fixture
async def system(
    own_nats: NatsServer, tmp_path: Path, usage_database_url: str
) -> AsyncIterator[System]:
    # A folder of its own: `database_url`'s SQLite file is tmp_path/keys.db
    keys_db = tmp_path / "keys-service" / "keys.db"
    keys = keys_settings(own_nats, database_url=f"sqlite:///{keys_db}")
    usage = UsageSettings(
        nats=own_nats.access("usage"), database_url=usage_database_url, snapshot_interval=0.05
    )
    operator = await nats.connect(**own_nats.options())
    edge = await nats.connect(**own_nats.options("edge"))
    async with running_keys(keys):
        yield System(own_nats, operator, edge, usage)
    await edge.close()
    await operator.close()


Factory = Callable[..., AbstractAsyncContextManager[Service]]


def this_minute() -> int:
    return int(time.time() // WINDOW_SECONDS)


async def within_one_minute(scenario: Callable[[], Awaitable[T]]) -> T:
    """What `scenario` observed in a run that began and ended in one counting minute: counts
    start afresh each minute, so a run across two would see neither minute's exact counts.
    A run takes seconds: of two in a row, one is within a minute."""
    minute = this_minute()
    observed = await scenario()
    if this_minute() != minute:
        observed = await scenario()
    return observed
