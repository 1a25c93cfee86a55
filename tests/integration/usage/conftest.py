"""Fixtures for the usage service tests: it and the keys service in-process, on a private NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint
from aitbc_contracts.subjects import KEYS_COMMANDS
from aitbc_infra.nats_server import NatsServer
from aitbc_keys.main import running_service as running_keys
from aitbc_keys.settings import Settings as KeysSettings
from aitbc_usage.main import Service
from aitbc_usage.main import running_service as running_usage
from aitbc_usage.settings import Settings as UsageSettings


@dataclass
class System:
    nats: NatsServer
    nc: NATS
    usage_settings: UsageSettings

    def usage(self, **changes: object) -> AbstractAsyncContextManager[Service]:
        return running_usage(replace(self.usage_settings, **changes))

    async def create_account(self, plan: str = "free") -> str:
        key = generate_key()
        command = m.CreateAccount(
            master_key_hash=hash_key(key), master_key_hint=hint(key), plan=plan
        )  # type: ignore[arg-type]
        reply = await self.nc.request(KEYS_COMMANDS, m.encoder.encode(command), timeout=5)
        view = m.reply_decoder.decode(reply.data)
        assert isinstance(view, m.AccountView)
        return view.account_id


@pytest.fixture
async def system(own_nats: NatsServer, tmp_path: Path) -> AsyncIterator[System]:
    keys = KeysSettings(nats_url=own_nats.url, database_url=f"sqlite:///{tmp_path / 'keys.db'}")
    usage = UsageSettings(
        nats_url=own_nats.url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}",
        snapshot_interval=0.05,
    )
    nc = await nats.connect(own_nats.url)
    async with running_keys(keys):
        yield System(own_nats, nc, usage)
    await nc.close()


Factory = Callable[..., AbstractAsyncContextManager[Service]]
