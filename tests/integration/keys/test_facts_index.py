"""Two keys processes on one database: checks answer from memory, and agree on revocations."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import projections
from aitbc_keys.main import Service, running_service
from aitbc_keys.settings import Settings


async def check(service: Service, key: str) -> m.CheckReply:
    reply = await service.handlers.check(m.encoder.encode(m.CheckKey(keyformat.hash_key(key))))
    return m.check_reply_decoder.decode(reply)


async def command(service: Service, cmd: m.AnyCommand) -> m.Reply:
    return m.reply_decoder.decode(await service.handlers.command(m.encoder.encode(cmd)))


async def test_two_processes_answer_from_memory_and_agree(
    own_nats: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(nats_url=own_nats.url, database_url=f"sqlite:///{tmp_path / 'keys.db'}")
    async with running_service(settings) as a, running_service(settings) as b:
        key = keyformat.generate_key()
        account = await command(
            a,
            m.CreateAccount(master_key_hash=keyformat.hash_key(key), master_key_hint="aitbc_x"),
        )
        assert isinstance(account, m.AccountView)
        # B has not heard of it from the stream yet, or has: either way it knows the key.
        assert isinstance(await check(b, key), m.KeyFacts)
        for _ in range(100):  # and soon from memory, through the key event stream
            if b.handlers.index.facts(keyformat.hash_key(key), datetime.now(UTC)) is not None:
                break
            await asyncio.sleep(0.02)

        async def no_database(*_: object) -> None:
            raise AssertionError("the database was asked")

        monkeypatch.setattr(projections, "key_facts", no_database)
        assert isinstance(await check(a, key), m.KeyFacts)
        assert isinstance(await check(b, key), m.KeyFacts)
        monkeypatch.undo()

        revoked = await command(
            a, m.RevokeKey(account_id=None, key_id=account.master_key_id, reason="test")
        )
        assert isinstance(revoked, m.KeyView) and revoked.status == "revoked"
        facts = await check(a, key)  # the process that revoked it knows at once
        assert isinstance(facts, m.KeyFacts) and facts.revoked
        for _ in range(100):  # the other one within moments
            facts = await check(b, key)
            if isinstance(facts, m.KeyFacts) and facts.revoked:
                break
            await asyncio.sleep(0.02)
        assert isinstance(facts, m.KeyFacts) and facts.revoked
