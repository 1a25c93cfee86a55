"""Two keys processes on one database: checks answer from memory, and agree on revocations."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.powers import Power
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import projections
from aitbc_keys.facts import FactsIndex, LiveFacts
from aitbc_keys.main import Service, running_service
from tests.bus import keys_settings
from tests.integration.keys.helpers import committed_key
from tests.key_histories import T0, H


async def check(service: Service, key: str) -> m.KeyFacts | m.Rejected:
    (reply,) = await check_hashes(service, [keyformat.hash_key(key)])
    return reply


async def check_hashes(service: Service, hashes: list[str]) -> list[m.KeyFacts | m.Rejected]:
    reply = m.check_reply_decoder.decode(
        await service.checks.check(m.encoder.encode(m.CheckKeys(hashes)))
    )
    assert isinstance(reply, m.CheckedKeys), reply
    return reply.replies


async def command(service: Service, cmd: m.AnyCommand) -> m.Reply:
    return m.reply_decoder.decode(
        await service.commands.answer(m.encoder.encode(cmd), Power.OPERATOR)
    )


async def test_two_processes_answer_from_memory_and_agree(
    own_nats: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = keys_settings(own_nats, database_url=f"sqlite:///{tmp_path / 'keys.db'}")
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
            if b.index.facts(keyformat.hash_key(key), datetime.now(UTC)) is not None:
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


async def test_a_batch_asks_the_database_only_for_what_the_index_lacks(
    own_nats: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = keys_settings(own_nats, database_url=f"sqlite:///{tmp_path / 'keys.db'}")
    async with running_service(settings) as service:
        known, stored = keyformat.generate_key(), keyformat.generate_key()
        for key in (known, stored):
            created = await command(
                service,
                m.CreateAccount(master_key_hash=keyformat.hash_key(key), master_key_hint="x"),
            )
            assert isinstance(created, m.AccountView)
        service.index.secrets.pop(keyformat.hash_key(stored))  # as if made elsewhere
        unknown = keyformat.hash_key(keyformat.generate_key())
        hashes = [keyformat.hash_key(known), unknown, "not a hash", keyformat.hash_key(stored)]
        asked: list[list[str]] = []
        key_facts = projections.key_facts

        async def spy(conn: object, secret_hashes: list[str], now: datetime) -> object:
            asked.append(list(secret_hashes))
            return await key_facts(conn, secret_hashes, now)  # type: ignore[arg-type]

        monkeypatch.setattr(projections, "key_facts", spy)
        replies = await check_hashes(service, hashes)
        assert asked == [[unknown, keyformat.hash_key(stored)]]  # one query, two hashes
        assert isinstance(replies[0], m.KeyFacts) and isinstance(replies[3], m.KeyFacts)
        codes = [getattr(r, "code", None) for r in replies]
        assert codes == [None, m.Code.INVALID_API_KEY, m.Code.VALIDATION_ERROR, None]

        async def unavailable(*_: object) -> None:
            raise OSError("the database is down")

        monkeypatch.setattr(projections, "key_facts", unavailable)
        replies = await check_hashes(service, hashes)
        assert isinstance(replies[0], m.KeyFacts)  # the index's answers stand
        codes = [getattr(r, "code", None) for r in replies]
        assert codes == [
            None,
            m.Code.SERVICE_UNAVAILABLE,
            m.Code.VALIDATION_ERROR,
            m.Code.SERVICE_UNAVAILABLE,
        ]


async def test_a_reset_reloads_the_index_from_the_log_keeping_what_arrives_meanwhile(
    engine: AsyncEngine,
) -> None:
    log = await committed_key(engine)
    log.revoke("key_1")  # committed elsewhere after the reload has read the log
    revoked, position = log.delivery[-1]
    index = FactsIndex()
    live = LiveFacts(engine, index)
    await live.load()
    index.secrets.clear()  # as if events had passed unseen
    assert index.facts(H[1], T0) is None

    live.reset()
    await asyncio.sleep(0)  # the reload has begun reading the log
    live.process(revoked, position)
    await live.stop()  # lets the reload end
    facts = index.facts(H[1], T0)
    assert isinstance(facts, m.KeyFacts) and facts.revoked
