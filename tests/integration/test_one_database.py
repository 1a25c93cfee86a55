"""The keys and usage services on ONE database (SQLite, then PostgreSQL): each keeps its Alembic
revision in a version table of its own, so neither takes the other's for its own; and a
database migrated when both kept it in `alembic_version` upgrades to that layout."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import msgspec
import nats
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint
from aitbc_contracts.subjects import (
    KEYS_OPERATOR_COMMANDS,
    MSG_ID_HEADER,
    partition_of,
    usage_batch_subject,
)
from aitbc_contracts.usage import UsageBatch, UsageEvent
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import db as keys_db
from aitbc_keys.main import running_service as running_keys
from aitbc_runtime import sql
from aitbc_runtime.commands import KeysCommands
from aitbc_runtime.scratch_database import ScratchDatabase
from aitbc_usage import store as usage_store
from aitbc_usage.main import running_service as running_usage
from aitbc_usage.settings import Settings as UsageSettings
from tests.bus import keys_settings


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def revision_in(engine: AsyncEngine, table: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text(f"SELECT version_num FROM {table}"))
        return [row[0] for row in rows]


def head(migrations: sql.Migrations) -> list[str]:
    """The revision a service's migrations end at: what its version table holds once run."""
    return [ScriptDirectory.from_config(sql.alembic_config(migrations)).get_current_head() or ""]


KEYS_HEAD = head(keys_db.MIGRATIONS)
USAGE_HEAD = head(usage_store.MIGRATIONS)


async def as_before(engine: AsyncEngine, migrations: sql.Migrations, revision: str) -> None:
    """What a release before separate version tables did: `revision` in `alembic_version`."""

    def upgrade(connection: sa.Connection) -> None:
        shared = replace(migrations, version_table=sql.SHARED_VERSION_TABLE)
        command.upgrade(sql.alembic_config(shared, connection), revision)

    async with sql.write_transaction(engine) as conn:
        await conn.run_sync(upgrade)


async def test_both_services_migrate_and_work_on_one_database(
    database_url: str, own_nats: NatsServer
) -> None:
    usage = UsageSettings(nats=own_nats.access("usage"), database_url=database_url)
    async with (
        running_keys(keys_settings(own_nats, database_url=database_url)),
        running_usage(usage) as service,
    ):
        operator = await nats.connect(**own_nats.options())
        try:
            account, key_id = await account_with_key(operator)
            at = datetime.now(UTC).replace(second=0, microsecond=0)
            batch = UsageBatch(events=[usage_event(account, key_id, at) for _ in range(3)])
            edge = await nats.connect(**own_nats.options("edge"))
            try:
                await edge.jetstream().publish(
                    usage_batch_subject(partition_of(account)),
                    msgspec.json.encode(batch),
                    headers={MSG_ID_HEADER: uuid.uuid4().hex},
                )
            finally:
                await edge.close()
            assert await counted(service.engine, account, at) == 3
        finally:
            await operator.close()
    engine = sql.create_engine(database_url)
    try:
        assert {"events", "api_keys", "usage_minutes", "stream_cursors"} <= await tables(engine)
        assert await revision_in(engine, "alembic_version_keys") == KEYS_HEAD
        assert await revision_in(engine, "alembic_version_usage") == USAGE_HEAD
        assert sql.SHARED_VERSION_TABLE not in await tables(engine)
    finally:
        await engine.dispose()


async def account_with_key(operator: nats.NATS) -> tuple[str, str]:
    commands = KeysCommands(operator, 5.0, KEYS_OPERATOR_COMMANDS)
    master = generate_key()
    made = await commands.send(
        m.CreateAccount(master_key_hash=hash_key(master), master_key_hint=hint(master))
    )
    assert isinstance(made, m.AccountView), made
    secret = generate_key()
    key = await commands.send(
        m.CreateKey(
            account_id=made.account_id, name="k", secret_hash=hash_key(secret), hint=hint(secret)
        )
    )
    assert isinstance(key, m.KeyView), key
    return made.account_id, key.key_id


def usage_event(account: str, key_id: str, at: datetime) -> UsageEvent:
    return UsageEvent(
        event_id=uuid.uuid4().hex, request_id=uuid.uuid4().hex, account_id=account,
        key_id=key_id, method="GET", route="/v1/jobs", status=200, latency_ms=1.0,
        decision="admitted", at=at,
    )  # fmt: skip


async def counted(engine: AsyncEngine, account: str, at: datetime) -> int:
    """The account's requests in the usage aggregates, once they stop growing (at most 10 s)."""
    total = 0
    for _ in range(200):
        minutes = await usage_store.series(
            engine, account, at - timedelta(minutes=1), at + timedelta(minutes=1), None
        )
        total = sum(minute.requests for minute in minutes)
        if total:
            return total
        await asyncio.sleep(0.05)
    return total


async def test_a_database_from_before_upgrades_to_a_version_table_per_service(
    database_url: str,
) -> None:
    """One database the keys service migrated into `alembic_version` (where the usage service
    then stopped with a revision error), upgraded; and a usage database of its own."""
    engine = sql.create_engine(database_url)
    try:
        await as_before(engine, keys_db.MIGRATIONS, "0002")
        await keys_db.migrate(engine)
        await usage_store.prepare(engine)
        assert await revision_in(engine, "alembic_version_keys") == KEYS_HEAD
        assert await revision_in(engine, "alembic_version_usage") == USAGE_HEAD
        assert sql.SHARED_VERSION_TABLE not in await tables(engine)
        assert "checkpoints" in await tables(engine)  # what came after the adopted 0002 ran
    finally:
        await engine.dispose()


async def test_a_usage_database_from_before_keeps_its_revision(database_url: str) -> None:
    engine = sql.create_engine(database_url)
    try:
        await as_before(engine, usage_store.MIGRATIONS, "0001")
        await usage_store.prepare(engine)  # its tables exist: 0001 must not run again, 0002 must
        await keys_db.migrate(engine)  # and the keys service's "0001" is not the usage one
        assert await revision_in(engine, "alembic_version_usage") == USAGE_HEAD
        assert await revision_in(engine, "alembic_version_keys") == KEYS_HEAD
        assert sql.SHARED_VERSION_TABLE not in await tables(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("migrations", [keys_db.MIGRATIONS, usage_store.MIGRATIONS])
async def test_a_database_a_newer_version_migrated_is_refused_in_words(
    database_url: str, migrations: sql.Migrations
) -> None:
    """The software rolled back after an upgrade: Alembic alone said only that it could not
    locate the revision, and the service died at each start without saying why."""
    engine = sql.create_engine(database_url)
    try:
        await sql.migrate(engine, migrations)
        async with engine.begin() as conn:
            table = migrations.version_table
            await conn.execute(sa.text(f"UPDATE {table} SET version_num = '9999'"))
        with pytest.raises(RuntimeError, match=f"{table} holds revision '9999'.*newer version"):
            await sql.migrate(engine, migrations)
    finally:
        await engine.dispose()


@pytest.fixture
async def postgres_url(postgres_server_url: str) -> AsyncIterator[str]:
    database = ScratchDatabase(postgres_server_url, "aitbc_test")
    await database.create()
    try:
        yield database.url
    finally:
        await database.drop()


@pytest.mark.postgres
async def test_a_usage_commit_does_not_wait_for_a_keys_write(postgres_url: str) -> None:
    """Each service serialises its own writers (the keys service must: the relay reads its
    positions in commit order); on one PostgreSQL database neither waits for the other's."""
    engine = sql.create_engine(postgres_url)
    try:
        await keys_db.migrate(engine)
        await usage_store.prepare(engine)
        event = usage_event("acc_1", "key_1", datetime.now(UTC))
        async with keys_db.write_transaction(engine):  # a keys command, slow to commit
            commit = usage_store.commit_batch(engine, ["p0"], [("p0", 1, [event])])
            assert await asyncio.wait_for(commit, 5) == {"p0": 1}
    finally:
        await engine.dispose()
