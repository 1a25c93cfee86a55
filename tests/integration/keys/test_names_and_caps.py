"""What the keys service refuses whoever sends it, over the real bus and database: names that
would rewrite what people read, and one key more than an account may hold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import nats
import pytest

from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEYS_OWNER_COMMANDS
from aitbc_infra.nats_server import NatsServer
from aitbc_keys.main import running_service
from tests.bus import keys_settings
from tests.integration.keys.caller import Caller, Clock, new_account, new_key

CAP = 3


@pytest.fixture
async def capped(database_url: str, own_nats: NatsServer, clock: Clock) -> AsyncIterator[Caller]:
    """The keys service with MAX_KEYS_PER_ACCOUNT=3, and an operator's caller."""
    settings = keys_settings(own_nats, database_url=database_url, max_keys_per_account=CAP)
    async with running_service(settings, relay_poll_interval=30, clock=clock):
        nc = await nats.connect(**own_nats.options())
        yield Caller(nc)
        await nc.close()


def create(account: m.AccountView, name: str) -> m.CreateKey:
    key = keyformat.generate_key()
    return m.CreateKey(
        account_id=account.account_id,
        name=name,
        secret_hash=keyformat.hash_key(key),
        hint=keyformat.hint(key),
        actor=account.master_key_id,
    )


async def test_names_with_control_or_format_characters_are_refused_on_every_subject(
    capped: Caller,
) -> None:
    account, _ = await new_account(capped)
    for subject in (KEYS_OWNER_COMMANDS, None):
        for name in ("pay\u202egnp.exe", "\x1b]0;owned\x07", "two\nlines"):
            sent = create(account, name)
            reply = await (capped.do(sent, subject) if subject else capped.do(sent))
            assert isinstance(reply, m.Rejected) and reply.code == m.Code.VALIDATION_ERROR, reply
            assert "control or format characters" in reply.message
    master = keyformat.generate_key()
    reply = await capped.do(
        m.CreateAccount(
            master_key_hash=keyformat.hash_key(master),
            master_key_hint=keyformat.hint(master),
            name="Ada\u2066 Ltd",
            actor="signup",
        ),
        KEYS_OWNER_COMMANDS,
    )
    assert isinstance(reply, m.Rejected) and reply.code == m.Code.VALIDATION_ERROR
    listed = await capped.do(m.ListKeys(account_id=account.account_id))
    assert isinstance(listed, m.KeyList) and [k.kind for k in listed.keys] == ["master"]


async def test_an_account_holds_at_most_its_cap_of_live_keys(capped: Caller, clock: Clock) -> None:
    account, _ = await new_account(capped)  # its master key is one
    first, _ = await new_key(capped, account, name="one")
    await new_key(capped, account, name="brief", expires_at=clock() + timedelta(seconds=30))
    refused = await capped.do(create(account, "four"), KEYS_OWNER_COMMANDS)
    assert isinstance(refused, m.Rejected) and refused.code == m.Code.TOO_MANY_KEYS
    assert f"({CAP})" in refused.message
    other, _ = await new_account(capped)  # the cap is per account
    assert isinstance(await capped.do(create(other, "theirs")), m.KeyView)

    clock.ahead = timedelta(seconds=31)  # an expired key holds no place
    assert isinstance(await capped.do(create(account, "after expiry")), m.KeyView)
    refused = await capped.do(create(account, "five"))
    assert isinstance(refused, m.Rejected) and refused.code == m.Code.TOO_MANY_KEYS
    await capped.do(m.RevokeKey(account_id=account.account_id, key_id=first.key_id))
    assert isinstance(await capped.do(create(account, "after a revocation")), m.KeyView)
