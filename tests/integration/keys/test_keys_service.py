"""The keys service in-process, over real NATS and a real database, as its callers see it: the
commands of an account's owner and the operator, and the events they publish."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
from nats.aio.msg import Msg

from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.events import KeyRevoked, decode_event
from aitbc_contracts.subjects import (
    KEY_EVENTS_STREAM,
    KEY_EVENTS_SUBJECTS,
    KEYS_OPERATOR_COMMANDS,
    KEYS_OWNER_COMMANDS,
)
from tests.integration.keys.caller import Caller, Clock, new_account, new_key


async def test_an_account_owner_manages_keys(caller: Caller) -> None:
    account, master = await new_account(caller, plan="pro")
    assert account.account_id.startswith("acc_") and len(account.account_id) == 20
    assert account.master_key_id.startswith("key_") and account.plan == "pro"

    facts = await caller.check(master)
    assert facts == m.KeyFacts(
        key_id=account.master_key_id,
        account_id=account.account_id,
        kind="master",
        plan="pro",
        revoked=False,
    )

    view, key = await new_key(caller, account, name=" deploy bot ", rate_limit=30)
    assert (view.name, view.kind, view.status, view.rate_limit) == (
        "deploy bot",
        "standard",
        "active",
        30,
    )
    assert view.hint == keyformat.hint(key) and key not in msgspec.json.encode(view).decode()
    facts = await caller.check(key)
    assert isinstance(facts, m.KeyFacts)
    assert (facts.key_id, facts.plan, facts.rate_limit) == (view.key_id, "pro", 30)

    listed = await caller.do(m.ListKeys(account_id=account.account_id))
    assert isinstance(listed, m.KeyList)
    assert {k.key_id for k in listed.keys} == {account.master_key_id, view.key_id}
    assert await caller.do(m.GetKey(account_id=account.account_id, key_id=view.key_id)) == view

    revoked = await caller.do(
        m.RevokeKey(account_id=account.account_id, key_id=view.key_id, actor=account.master_key_id)
    )
    assert isinstance(revoked, m.KeyView) and revoked.status == "revoked"
    assert revoked.revoked_at is not None
    facts = await caller.check(key)
    assert isinstance(facts, m.KeyFacts) and facts.revoked
    again = await caller.do(m.RevokeKey(account_id=account.account_id, key_id=view.key_id))
    assert again == revoked  # idempotent

    refused = await caller.do(
        m.RegenerateKey(
            account_id=account.account_id,
            key_id=view.key_id,
            secret_hash="f" * 64,
            hint="aitbc_ffff",
        )
    )
    assert isinstance(refused, m.Rejected) and refused.code == m.Code.CONFLICT
    assert "revoked" in refused.message

    changed = await caller.do(m.SetPlan(account_id=account.account_id, plan="enterprise"))
    assert isinstance(changed, m.AccountView) and changed.plan == "enterprise"
    facts = await caller.check(master)
    assert isinstance(facts, m.KeyFacts) and facts.plan == "enterprise"


async def test_owners_cannot_touch_other_accounts_or_their_master_key(caller: Caller) -> None:
    mine, _ = await new_account(caller)
    theirs, _ = await new_account(caller)
    their_key, _ = await new_key(caller, theirs)
    for command in (
        m.GetKey(account_id=mine.account_id, key_id=their_key.key_id),
        m.RevokeKey(account_id=mine.account_id, key_id=their_key.key_id),
        m.RegenerateKey(
            account_id=mine.account_id,
            key_id=their_key.key_id,
            secret_hash="e" * 64,
            hint="aitbc_eeee",
        ),
        m.GetKey(account_id=mine.account_id, key_id="key_0000000000000000"),
    ):
        reply = await caller.do(command)
        assert isinstance(reply, m.Rejected) and reply.code == m.Code.NOT_FOUND, command
    still = await caller.do(m.GetKey(account_id=None, key_id=their_key.key_id))
    assert isinstance(still, m.KeyView) and still.status == "active"

    refused = await caller.do(
        m.RevokeKey(
            account_id=mine.account_id, key_id=mine.master_key_id, actor=mine.master_key_id
        ),
        KEYS_OWNER_COMMANDS,
    )
    assert isinstance(refused, m.Rejected) and refused.code == m.Code.FORBIDDEN
    missing = await caller.do(m.ListKeys(account_id="acc_0000000000000000"))
    assert isinstance(missing, m.Rejected) and missing.code == m.Code.NOT_FOUND


async def test_regeneration_with_and_without_grace(caller: Caller, clock: Clock) -> None:
    account, _ = await new_account(caller)
    view, old = await new_key(caller, account, expires_at=datetime.now(UTC) + timedelta(seconds=1))

    new = keyformat.generate_key()
    regenerated = await caller.do(
        m.RegenerateKey(
            account_id=account.account_id,
            key_id=view.key_id,
            secret_hash=keyformat.hash_key(new),
            hint=keyformat.hint(new),
            grace_seconds=1,
        )
    )
    assert isinstance(regenerated, m.KeyView)
    assert regenerated.hint == keyformat.hint(new) and regenerated.regenerated_at is not None
    old_facts, new_facts = await caller.check(old), await caller.check(new)
    assert isinstance(old_facts, m.KeyFacts) and isinstance(new_facts, m.KeyFacts)
    assert old_facts.key_id == new_facts.key_id == view.key_id
    assert old_facts.secret_valid_until is not None and new_facts.secret_valid_until is None
    assert old_facts.secret_valid_until - datetime.now(UTC) <= timedelta(seconds=1)

    newest = keyformat.generate_key()
    await caller.do(
        m.RegenerateKey(
            account_id=account.account_id,
            key_id=view.key_id,
            secret_hash=keyformat.hash_key(newest),
            hint=keyformat.hint(newest),
        )
    )
    unknown = await caller.check(new)  # no grace: the replaced secret is dead at once
    assert isinstance(unknown, m.Rejected) and unknown.code == m.Code.INVALID_API_KEY

    clock.ahead = timedelta(seconds=1.1)
    unknown = await caller.check(old)  # grace over
    assert isinstance(unknown, m.Rejected) and unknown.code == m.Code.INVALID_API_KEY
    expired = await caller.do(m.GetKey(account_id=account.account_id, key_id=view.key_id))
    assert isinstance(expired, m.KeyView) and expired.status == "expired"
    facts = await caller.check(newest)  # the edge judges expiry from expires_at
    assert isinstance(facts, m.KeyFacts) and facts.expires_at == view.expires_at


async def test_a_revocation_reaches_the_key_event_stream_at_once(caller: Caller) -> None:
    account, _ = await new_account(caller)
    view, _ = await new_key(caller, account)
    js = caller.nc.jetstream()
    seen: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_event(msg: Msg) -> None:
        seen.put_nowait(msg.data)

    sub = await js.subscribe(  # the readers' mirror: named, since it holds no subjects
        KEY_EVENTS_SUBJECTS, stream=KEY_EVENTS_STREAM, cb=on_event, ordered_consumer=True
    )
    for _ in range(3):  # account created, master key created, key created
        await asyncio.wait_for(seen.get(), 2)
    started = asyncio.get_running_loop().time()
    await caller.do(
        m.RevokeKey(
            account_id=account.account_id, key_id=view.key_id, reason="leaked", request_id="req-42"
        )
    )
    event = decode_event(await asyncio.wait_for(seen.get(), 2))
    assert asyncio.get_running_loop().time() - started < 1.0  # not the 30 s poll
    assert isinstance(event, KeyRevoked)
    assert (event.key_id, event.reason, event.request_id, event.actor) == (
        view.key_id,
        "leaked",
        "req-42",
        m.OPERATOR,
    )
    await sub.unsubscribe()


async def test_invalid_commands_say_what_is_wrong(caller: Caller) -> None:
    account, _ = await new_account(caller)
    for command, field in (
        (
            m.CreateKey(
                account_id=account.account_id, name=" ", secret_hash="a" * 64, hint="aitbc_aaaa"
            ),
            "name",
        ),
        (
            m.CreateKey(
                account_id=account.account_id,
                name="x",
                secret_hash="a" * 64,
                hint="aitbc_aaaa",
                rate_limit=0,
            ),
            "rate_limit",
        ),
        (
            m.CreateKey(
                account_id=account.account_id,
                name="x",
                secret_hash="a" * 64,
                hint="aitbc_aaaa",
                expires_at=datetime(2000, 1, 1, tzinfo=UTC),
            ),
            "expires_at",
        ),
    ):
        reply = await caller.do(command)
        assert isinstance(reply, m.Rejected) and reply.code == m.Code.VALIDATION_ERROR
        assert field in reply.message


async def test_a_nul_in_a_commands_text_is_refused_as_invalid(caller: Caller) -> None:
    """PostgreSQL's text holds no NUL character: an id with one (as an edge may send on the
    owner subject) failed in the database, and the command was answered INTERNAL_ERROR, with
    a traceback in the log, rather than refused as invalid."""
    account, _ = await new_account(caller)
    for command in (
        m.GetAccount(account_id="acc_\x00"),
        m.GetKey(account_id=None, key_id="key_\x00"),
        m.ListKeyEvents(account_id=account.account_id, key_id="key_\x00"),
        m.RevokeKey(account_id=account.account_id, key_id=account.master_key_id, actor="k\x00"),
    ):
        for subject in (KEYS_OPERATOR_COMMANDS, KEYS_OWNER_COMMANDS):
            reply = await caller.do(command, subject)
            assert isinstance(reply, m.Rejected), reply
            assert reply.code == m.Code.VALIDATION_ERROR, (command, subject, reply)


async def test_a_request_id_the_edge_would_not_send_is_refused(caller: Caller) -> None:
    """The keys service writes a command's request id in every line it logs while handling
    it, and keeps it in the command's events: any sender on the bus could put a line break
    and a made-up log line of its own there."""
    account, _ = await new_account(caller)
    forged = "r1\n2030-01-01 00:00:00,000 INFO aitbc_keys: relay resumes after position 0"
    for request_id in (forged, "r" * 129, "\x1b[2J"):
        command = m.GetAccount(
            account_id=account.account_id, actor=account.master_key_id, request_id=request_id
        )
        reply = await caller.do(command, KEYS_OWNER_COMMANDS)
        assert isinstance(reply, m.Rejected) and reply.code == m.Code.VALIDATION_ERROR, reply
    ok = m.GetAccount(
        account_id=account.account_id,
        actor=account.master_key_id,
        request_id="4e55-a.b:c_" + "f" * 32,
    )
    assert isinstance(await caller.do(ok, KEYS_OWNER_COMMANDS), m.AccountView)
