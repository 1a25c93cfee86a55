"""An owner keeps the account's master key to managing keys, over the real bus and database:
the keys service records it as an event, and every key check of the master key says so."""

from __future__ import annotations

from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEYS_OWNER_COMMANDS
from aitbc_keys.main import Service
from tests.integration.keys.caller import Caller, new_account, new_key


async def test_the_master_key_is_kept_off_the_data_plane_and_let_out_again(
    keys_service: Service, caller: Caller
) -> None:
    account, master = await new_account(caller)
    _, key = await new_key(caller, account)
    owner = {"account_id": account.account_id, "actor": account.master_key_id}

    kept = await caller.do(m.SetMasterKeyDataPlane(data_plane=False, **owner), KEYS_OWNER_COMMANDS)
    assert isinstance(kept, m.AccountView) and kept.master_key_data_plane is False
    facts = await caller.check(master)
    assert isinstance(facts, m.KeyFacts) and (facts.kind, facts.data_plane) == ("master", False)
    standard = await caller.check(key)
    assert isinstance(standard, m.KeyFacts) and standard.data_plane
    keys_service.index.reset()  # what the database says, without the index
    from_db = await caller.check(master)
    assert isinstance(from_db, m.KeyFacts) and from_db.data_plane is False
    assert await caller.do(m.GetAccount(account_id=account.account_id)) == kept

    again = await caller.do(m.SetMasterKeyDataPlane(data_plane=True, **owner), KEYS_OWNER_COMMANDS)
    assert isinstance(again, m.AccountView) and again.master_key_data_plane
    facts = await caller.check(master)
    assert isinstance(facts, m.KeyFacts) and facts.data_plane
