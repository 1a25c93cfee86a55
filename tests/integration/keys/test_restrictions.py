"""Restricted keys through the keys service on a real bus and database (SQLite, PostgreSQL): an
operator creates and restricts keys with `aitbc`, `keys show --at` tells them before and after,
the replay lists key.restricted.v1, and a root key is judged by its own stream."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest
from nats.aio.client import Client

from aitbc_cli.main import run
from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEY_EVENTS_STREAM, KEYS_OWNER_COMMANDS
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import projections, store
from aitbc_keys.main import Service, running_service
from aitbc_runtime.bus_access import BusAccess
from tests.bus import cli_options, keys_settings


@pytest.fixture
async def service(database_url: str, own_nats: NatsServer) -> AsyncIterator[Service]:
    settings = keys_settings(own_nats, database_url=database_url)
    async with running_service(settings) as svc:
        yield svc


@pytest.fixture
async def edge(service: Service, own_nats: NatsServer) -> AsyncIterator[Client]:
    """The edge's role: owner commands, each naming the key that acts."""
    client = await nats.connect(**own_nats.options("edge"))
    yield client
    await client.close()


async def aitbc(access: BusAccess, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(run, [*cli_options(access), *argv], None, out, err)
    return code, out.getvalue(), err.getvalue()


async def relayed(service: Service, nc: Client) -> None:
    want = await store.last_position(service.engine)
    js = nc.jetstream()
    for _ in range(500):
        if (await js.stream_info(KEY_EVENTS_STREAM)).state.last_seq >= want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the relay never published {want} events")


async def as_owner(edge: Client, command: m.AnyCommand) -> m.Reply:
    reply = await edge.request(KEYS_OWNER_COMMANDS, m.encoder.encode(command), timeout=10)
    return m.reply_decoder.decode(reply.data)


def secret() -> dict[str, str]:
    key = keyformat.generate_key()
    return {"secret_hash": keyformat.hash_key(key), "hint": keyformat.hint(key)}


async def test_an_operator_restricts_a_key_and_keys_show_tells_before_and_after(
    service: Service, edge: Client, own_nats: NatsServer, auditor: BusAccess
) -> None:
    operator = own_nats.access()
    code, out, err = await aitbc(operator, "accounts", "create", "--plan", "free", "--json")
    assert code == 0, err
    account_id = json.loads(out)["account_id"]
    code, out, err = await aitbc(
        operator, "keys", "create", "--account", account_id, "--name", "ci", "--json"
    )
    assert code == 0, err
    made = json.loads(out)
    assert made["scopes"] == [] and keyformat.is_well_formed(made["key"])
    before = datetime.now(UTC)
    await asyncio.sleep(0.01)
    code, out, err = await aitbc(
        operator, "keys", "restrict", made["key_id"], "--scope", "jobs:read",
        "--allow-ip", "203.0.113.9", "--allow-ip", "10.1.2.3/8", "--shadow", "--json",
    )  # fmt: skip
    assert code == 0, err
    restricted = json.loads(out)
    assert restricted["scopes"] == ["jobs:read"]
    assert restricted["allowed_ips"] == ["10.0.0.0/8", "203.0.113.9/32"]
    assert restricted["shadow"] is True

    code, out, err = await aitbc(operator, "keys", "restrict", made["key_id"], "--scope", "Jobs")
    assert code == 1 and "VALIDATION_ERROR" in err and "resource:action" in err

    reader = await nats.connect(**auditor.options())  # the auditor's mirror: what it reads
    try:
        await relayed(service, reader)
    finally:
        await reader.close()
    code, out, err = await aitbc(
        auditor, "keys", "show", made["key_id"], "--at", before.isoformat(), "--json"
    )
    assert code == 0, err
    assert "scopes" not in json.loads(out)  # unrestricted then: shown as keys always were
    code, out, err = await aitbc(auditor, "keys", "show", made["key_id"], "--json")
    assert code == 0, err
    now = json.loads(out)
    assert (now["scopes"], now["allowed_ips"], now["shadow"]) == (
        ["jobs:read"],
        ["10.0.0.0/8", "203.0.113.9/32"],
        True,
    )
    code, out, err = await aitbc(auditor, "keys", "show", made["key_id"])
    assert "jobs:read" in out and "10.0.0.0/8 203.0.113.9/32" in out
    code, out, err = await aitbc(auditor, "events", "replay", "--key", made["key_id"], "--json")
    assert [json.loads(line)["type"] for line in out.splitlines()] == [
        "key.created.v1",
        "key.restricted.v1",
    ]


async def test_a_root_key_is_judged_by_its_own_stream(service: Service, edge: Client) -> None:
    master = secret()
    signup = m.CreateAccount(
        master_key_hash=master["secret_hash"], master_key_hint=master["hint"], actor="signup"
    )
    account = await as_owner(edge, signup)
    assert isinstance(account, m.AccountView)
    mine = {"account_id": account.account_id}
    root = await as_owner(
        edge,
        m.CreateKey(
            **mine, name="root", scopes=("keys:manage", "jobs:read"),
            actor=account.master_key_id, **secret(),
        ),
    )  # fmt: skip
    assert isinstance(root, m.KeyView) and root.scopes == ("jobs:read", "keys:manage")
    by_root = {**mine, "actor": root.key_id}

    child = await as_owner(
        edge, m.CreateKey(**by_root, name="c", scopes=("jobs:read",), **secret())
    )
    assert isinstance(child, m.KeyView) and child.scopes == ("jobs:read",)
    for wider in [("jobs:write",), ()]:
        refused = await as_owner(edge, m.CreateKey(**by_root, name="w", scopes=wider, **secret()))
        assert isinstance(refused, m.Rejected) and refused.code == m.Code.FORBIDDEN, refused
    refused = await as_owner(edge, m.RevokeKey(**by_root, key_id=account.master_key_id))
    assert isinstance(refused, m.Rejected) and "master key" in refused.message
    refused = await as_owner(edge, m.SetMasterKeyDataPlane(**by_root, data_plane=False))
    assert isinstance(refused, m.Rejected) and refused.code == m.Code.FORBIDDEN

    # Its power is its stream's: once the master key takes keys:manage away, it manages nothing
    narrowed = m.RestrictKey(
        **mine, key_id=root.key_id, scopes=("jobs:read",), actor=account.master_key_id
    )
    assert isinstance(await as_owner(edge, narrowed), m.KeyView)
    refused = await as_owner(edge, m.RevokeKey(**by_root, key_id=child.key_id))
    assert isinstance(refused, m.Rejected) and "keys:manage" in refused.message
    refused = await as_owner(edge, m.RestrictKey(**by_root, key_id=child.key_id, shadow=False))
    assert isinstance(refused, m.Rejected) and refused.code == m.Code.FORBIDDEN


async def test_the_read_model_answers_with_a_keys_restrictions(
    service: Service, edge: Client
) -> None:
    """The facts a check the index cannot settle gets from the database, and a rebuild's."""
    master, key = secret(), secret()
    signup = m.CreateAccount(
        master_key_hash=master["secret_hash"], master_key_hint=master["hint"], actor="signup"
    )
    account = await as_owner(edge, signup)
    assert isinstance(account, m.AccountView)
    made = await as_owner(
        edge,
        m.CreateKey(
            account_id=account.account_id, name="r", scopes=("usage:read",),
            allowed_ips=("2001:db8::/32",), shadow=True, actor=account.master_key_id, **key,
        ),
    )  # fmt: skip
    assert isinstance(made, m.KeyView)
    for _ in range(2):  # as appended, then as rebuilt from the log
        async with service.engine.connect() as conn:
            found = await projections.key_facts(conn, [key["secret_hash"]], datetime.now(UTC))
        facts = found[key["secret_hash"]]
        assert (facts.scopes, facts.allowed_ips, facts.shadow) == (
            ("usage:read",),
            ("2001:db8::/32",),
            True,
        )
        await projections.rebuild(service.engine)
