"""Changes to one stream at once: each is read and appended under the write lock, so none is
decided on a version another has moved past, and none fails for having raced the others."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint
from aitbc_contracts.powers import Power
from aitbc_keys import store
from aitbc_keys.entrypoint import CommandEndpoint
from aitbc_keys.service_layer.handlers import COMMAND_RETRIES

AT_ONCE = 4 * COMMAND_RETRIES  # more than retries could absorb, were they racing


async def carried_out(endpoint: CommandEndpoint, command: m.Command) -> m.Reply:
    reply = m.reply_decoder.decode(await endpoint.answer(m.encoder.encode(command), Power.OPERATOR))
    assert not isinstance(reply, m.Rejected), reply
    return reply  # type: ignore[no-any-return]


async def test_changes_of_one_key_at_once_are_all_applied_in_turn(engine: AsyncEngine) -> None:
    endpoint = CommandEndpoint(engine)
    key = generate_key()
    account = await carried_out(endpoint, m.CreateAccount(hash_key(key), hint(key)))
    assert isinstance(account, m.AccountView)
    secret = generate_key()
    made = await carried_out(
        endpoint,
        m.CreateKey(account.account_id, "busy", hash_key(secret), hint(secret)),
    )
    assert isinstance(made, m.KeyView)
    scopes = [(f"jobs{i}:read",) for i in range(AT_ONCE)]
    replies = await asyncio.gather(
        *(
            carried_out(endpoint, m.RestrictKey(account.account_id, made.key_id, scopes=each))
            for each in scopes
        )
    )
    views = [reply for reply in replies if isinstance(reply, m.KeyView)]
    assert {view.scopes for view in views} == set(scopes)  # each as it left it
    stream = await store.load(engine, made.key_id)
    assert [event.version for event in stream] == list(range(1, AT_ONCE + 2))
