"""A random history of management commands, then: rebuild the read models while key checks run,
and replay the stream into an empty database: both must equal the live read models, row by row."""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from aitbc_cli.main import run
from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.events import AnyEvent, decode_event
from aitbc_contracts.keys import State, fold
from aitbc_contracts.subjects import KEY_EVENTS_STREAM, KEYS_CHECK, KEYS_OPERATOR_COMMANDS
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import domain, projections, store
from aitbc_keys.db import create_engine, migrate, write_transaction
from aitbc_keys.main import Service, running_service
from aitbc_keys.schema import api_keys, key_secrets
from aitbc_runtime.bus_access import BusAccess
from tests.bus import cli_options, keys_settings

COMMANDS = 300
AT_ONCE = 8  # commands in flight together: appends race for the write lock and the chain head


@pytest.fixture
async def service(database_url: str, own_nats: NatsServer) -> AsyncIterator[Service]:
    settings = keys_settings(own_nats, database_url=database_url)
    async with running_service(settings, relay_poll_interval=30) as svc:
        yield svc


async def ask(nc: Client, command: m.AnyCommand) -> m.Reply:
    reply = await nc.request(KEYS_OPERATOR_COMMANDS, m.encoder.encode(command), timeout=10)
    return m.reply_decoder.decode(reply.data)


async def check(nc: Client, key: str) -> m.KeyFacts | m.Rejected:
    payload = m.encoder.encode(m.CheckKeys([keyformat.hash_key(key)]))
    reply = m.check_reply_decoder.decode((await nc.request(KEYS_CHECK, payload, timeout=10)).data)
    assert isinstance(reply, m.CheckedKeys), reply
    return reply.replies[0]


def secret() -> tuple[str, dict[str, str]]:
    key = keyformat.generate_key()
    return key, {"secret_hash": keyformat.hash_key(key), "hint": keyformat.hint(key)}


class History:
    """Random, mostly valid management commands; the refused ones must change nothing."""

    def __init__(self, nc: Client, seed: int) -> None:
        self.nc = nc
        self.rng = random.Random(seed)
        self.accounts: list[m.AccountView] = []
        self.keys: dict[str, tuple[str, str]] = {}  # key id -> (account id, current plaintext)

    async def one(self) -> None:
        rng = self.rng
        roll = rng.random()
        if not self.accounts or roll < 0.1:
            _, master = secret()
            command: m.AnyCommand = m.CreateAccount(
                master_key_hash=master["secret_hash"],
                master_key_hint=master["hint"],
                plan=rng.choice(["free", "pro", "enterprise"]),
            )
        elif roll < 0.2:
            account = rng.choice(self.accounts)
            command = m.SetPlan(
                account_id=account.account_id, plan=rng.choice(["free", "pro", "enterprise"])
            )
        elif roll < 0.5 or not self.keys:
            account = rng.choice(self.accounts)
            key, new = secret()
            command = m.CreateKey(
                account_id=account.account_id,
                name=f"k{rng.randrange(1000)}",
                rate_limit=rng.choice([None, 10, 100]),
                actor=account.master_key_id,
                request_id=f"req-{rng.randrange(10**6)}",
                **new,
            )
        else:
            key_id = rng.choice(sorted(self.keys))
            account_id, _ = self.keys[key_id]
            if roll < 0.7:
                command = m.RevokeKey(account_id=account_id, key_id=key_id, actor="operator")
            else:
                key, new = secret()
                grace = rng.choice([0, 0, 300])
                command = m.RegenerateKey(
                    account_id=account_id, key_id=key_id, grace_seconds=grace, **new
                )
        reply = await ask(self.nc, command)
        if isinstance(reply, m.AccountView) and isinstance(command, m.CreateAccount):
            self.accounts.append(reply)
        elif isinstance(reply, m.KeyView) and isinstance(command, m.CreateKey | m.RegenerateKey):
            self.keys[reply.key_id] = (reply.account_id, key)
        else:  # refused (regenerating a revoked key) or no new key: fine, a history has those
            assert isinstance(reply, m.AccountView | m.KeyView | m.Rejected), reply


async def aitbc(operator: BusAccess, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(run, [*cli_options(operator), *argv], None, out, err)
    return code, out.getvalue(), err.getvalue()


async def live_rows(service: Service) -> dict[str, list[tuple[Any, ...]]]:
    async with service.engine.connect() as conn:
        return await projections.snapshot(conn)


async def rebuild_while_checking(
    service: Service, operator: BusAccess, nc: Client, history: History, live: dict[str, Any]
) -> int:
    """Rebuild while key checks run: a revoked key must stay revoked, a good key good. Other
    rows are damaged first: only a real refold from the events puts them back."""
    revoked_id = next(r[0] for r in live["api_keys"] if r[5] == "revoked")
    good_id = next(r[0] for r in live["api_keys"] if r[5] == "active" and r[0] in history.keys)
    revoked_key, good_key = history.keys[revoked_id][1], history.keys[good_id][1]
    damaged = next(r[0] for r in live["api_keys"] if r[0] not in (revoked_id, good_id))
    async with write_transaction(service.engine) as conn:
        await conn.execute(api_keys.update().where(api_keys.c.key_id == damaged).values(name="x"))
        await conn.execute(key_secrets.delete().where(key_secrets.c.key_id == damaged))
    assert await live_rows(service) != live
    rebuilding = asyncio.create_task(aitbc(operator, "--timeout", "60", "projections", "rebuild"))
    checks = 0
    while not rebuilding.done() or checks == 0:
        bad, good = await asyncio.gather(check(nc, revoked_key), check(nc, good_key))
        assert isinstance(bad, m.KeyFacts) and bad.revoked, bad
        assert isinstance(good, m.KeyFacts) and not good.revoked, good
        checks += 1
    code, out, err = await rebuilding
    count = await store.last_position(service.engine)
    assert (code, out) == (0, f"rebuilt the keys read models from {count} events\n"), err
    return count


async def replayed_rows(events: list[AnyEvent], database: Path) -> dict[str, Any]:
    """The read models of these events, folded into an empty database."""
    empty = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        await migrate(empty)
        async with write_transaction(empty) as conn:
            states: dict[str, State] = {}
            domain.fold_streams(states, events)
            await projections.write_states(conn, states.values())
        async with empty.connect() as conn:
            return await projections.snapshot(conn)
    finally:
        await empty.dispose()


async def test_rebuilt_and_replayed_read_models_equal_the_live_ones(
    service: Service, own_nats: NatsServer, tmp_path: Path
) -> None:
    operator = own_nats.access()  # operator commands, a rebuild among them: admin
    nc = await nats.connect(**operator.options())
    try:
        history = History(nc, seed=4)
        for _ in range(COMMANDS // AT_ONCE):
            await asyncio.gather(*(history.one() for _ in range(AT_ONCE)))
        live = await live_rows(service)
        assert len(live["api_keys"]) > 50 and any(r[5] == "revoked" for r in live["api_keys"])
        count = await rebuild_while_checking(service, operator, nc, history, live)
        assert await live_rows(service) == live

        # The stream, replayed and folded into an empty database, gives the same rows.
        js = nc.jetstream()
        while (await js.stream_info(KEY_EVENTS_STREAM)).state.messages < count:
            await asyncio.sleep(0.01)
        code, out, err = await aitbc(operator, "events", "replay", "--json")
        assert code == 0, err
        replayed = [decode_event(line) for line in out.splitlines()]
        stored = await store.records_after(service.engine, 0, limit=count + 1)
        assert [line.encode() for line in out.splitlines()] == [r.data for r in stored]
        assert await replayed_rows(replayed, tmp_path / "replayed.db") == live

        # And each aggregate folds from the stream to the state the service decides on.
        streams: dict[str, list[Any]] = {}
        for event in replayed:
            streams.setdefault(event.stream_id, []).append(event)
        for stream_id, its_events in streams.items():
            assert fold(its_events) == fold(await store.load(service.engine, stream_id))

        code, out, err = await aitbc(
            operator, "events", "verify", "--json", "--database-url", service.settings.database_url
        )
        assert (code, json.loads(out)["intact"]) == (0, True), out + err
    finally:
        await nc.close()
