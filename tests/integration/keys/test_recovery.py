"""Account recovery, as an operator does it with the `aitbc` command against a running keys
service: a new master key for an account whose owner lost the old one (or had it revoked), the
old one revoked, both in the key event log for `events replay` and `keys show`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEYS_OWNER_COMMANDS
from aitbc_infra.nats_server import NatsServer
from aitbc_keys.main import Service
from aitbc_runtime.bus_access import BusAccess
from tests.integration.keys.caller import Caller, new_account, new_key
from tests.integration.keys.test_audit import aitbc, relayed


@pytest.fixture
async def nc(keys_service: Service, own_nats: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(**own_nats.options())
    yield client
    await client.close()


async def recover(admin: BusAccess, account_id: str, *more: str) -> dict[str, str]:
    code, out, err = await aitbc(admin, "accounts", "new-master-key", account_id, "--json", *more)
    assert code == 0, err
    made: dict[str, str] = json.loads(out)
    return made


async def test_an_operator_gives_an_account_a_new_master_key_and_the_old_one_is_revoked(
    keys_service: Service, caller: Caller, nc: Client, own_nats: NatsServer
) -> None:
    account, old = await new_account(caller)
    standard, key = await new_key(caller, account)
    made = await recover(own_nats.access("admin"), account.account_id, "--reason", "lost it")
    new = made["master_key"]
    assert keyformat.is_well_formed(new) and made["kind"] == "master"

    old_facts, new_facts = await caller.check(old), await caller.check(new)
    assert isinstance(old_facts, m.KeyFacts) and old_facts.revoked
    assert isinstance(new_facts, m.KeyFacts) and not new_facts.revoked
    assert (new_facts.kind, new_facts.account_id, new_facts.key_id) == (
        "master",
        account.account_id,
        made["key_id"],
    )
    assert isinstance(await caller.check(key), m.KeyFacts)  # the other keys are untouched
    shown = await caller.do(m.GetAccount(account_id=account.account_id))
    assert isinstance(shown, m.AccountView) and shown.master_key_id == made["key_id"]
    assert isinstance(await caller.do(m.RebuildProjections()), m.Rebuilt)  # refolded: the same
    assert await caller.do(m.GetAccount(account_id=account.account_id)) == shown

    await relayed(keys_service, nc)
    auditor = own_nats.access("auditor")
    code, out, err = await aitbc(auditor, "events", "replay", "--account", account.account_id)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(r[2], r[3], r[5]) for r in rows[-2:]] == [
        ("key.revoked.v1", account.master_key_id, "operator"),
        ("key.created.v1", made["key_id"], "operator"),
    ]
    code, out, err = await aitbc(auditor, "keys", "show", account.master_key_id, "--json")
    was = json.loads(out)
    assert (was["status"], was["revoked_by"]) == ("revoked", "operator")
    assert was["reason"] == f"replaced by the new master key {made['key_id']}: lost it"
    code, out, err = await aitbc(auditor, "keys", "show", made["key_id"], "--json")
    now = json.loads(out)
    assert (now["kind"], now["status"], now["created_by"]) == ("master", "active", "operator")
    assert standard.key_id != made["key_id"]


async def test_a_revoked_master_key_can_be_replaced_again_and_only_by_an_operator(
    caller: Caller, own_nats: NatsServer
) -> None:
    account, _ = await new_account(caller)
    await caller.do(m.RevokeKey(account_id=None, key_id=account.master_key_id))  # a dead account
    first = await recover(own_nats.access("admin"), account.account_id)
    second = await recover(own_nats.access("admin"), account.account_id)  # lost again
    assert isinstance(await caller.check(second["master_key"]), m.KeyFacts)
    facts = await caller.check(first["master_key"])
    assert isinstance(facts, m.KeyFacts) and facts.revoked

    code, _, err = await aitbc(
        own_nats.access("auditor"), "accounts", "new-master-key", account.account_id
    )
    assert code == 1 and "permissions violation" in err and "admin" in err
    hopeful = keyformat.generate_key()
    refused = await caller.do(
        m.ReplaceMasterKey(
            account_id=account.account_id,
            secret_hash=keyformat.hash_key(hopeful),
            hint=keyformat.hint(hopeful),
            actor=account.master_key_id,
        ),
        KEYS_OWNER_COMMANDS,
    )
    assert isinstance(refused, m.Rejected) and refused.code == m.Code.FORBIDDEN
    code, _, err = await aitbc(own_nats.access("admin"), "accounts", "new-master-key", "acc_nope")
    assert code == 1 and "NOT_FOUND" in err
