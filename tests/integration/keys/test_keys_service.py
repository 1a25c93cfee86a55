"""The keys service in-process, over real NATS and a real database, as its callers see it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.events import KeyRevoked, decode_event
from aitbc_contracts.subjects import KEY_EVENTS_SUBJECTS, KEYS_CHECK, KEYS_COMMANDS
from aitbc_infra.nats_server import NatsServer
from aitbc_keys.main import Service, running_service
from aitbc_keys.settings import Settings


class Caller:
    """What the edge and the CLI do: encode, request, decode the reply union."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc

    async def raw(self, subject: str, payload: bytes) -> m.Reply | m.CheckReply:
        reply = await self.nc.request(subject, payload, timeout=5)
        decoder = m.check_reply_decoder if subject == KEYS_CHECK else m.reply_decoder
        return decoder.decode(reply.data)  # type: ignore[no-any-return]

    async def do(self, command: m.AnyCommand) -> m.Reply:
        return await self.raw(KEYS_COMMANDS, m.encoder.encode(command))  # type: ignore[return-value]

    async def check(self, key: str) -> m.KeyFacts | m.Rejected:
        (reply,) = await self.check_hashes([keyformat.hash_key(key)])
        return reply

    async def check_hashes(self, hashes: list[str]) -> list[m.KeyFacts | m.Rejected]:
        reply = await self.raw(KEYS_CHECK, m.encoder.encode(m.CheckKeys(hashes)))
        assert isinstance(reply, m.CheckedKeys), reply
        return reply.replies


class Clock:
    """The service's clock: the real time, moved on by the test instead of waiting."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def service(database_url: str, own_nats: NatsServer, clock: Clock) -> AsyncIterator[Service]:
    settings = Settings(nats_url=own_nats.url, database_url=database_url)
    # A 30 s poll: events must reach the stream because appends wake the relay.
    async with running_service(settings, relay_poll_interval=30, clock=clock) as svc:
        yield svc


@pytest.fixture
async def caller(service: Service) -> AsyncIterator[Caller]:
    nc = await nats.connect(service.settings.nats_url)
    yield Caller(nc)
    await nc.close()


async def new_account(caller: Caller, plan: str = "free") -> tuple[m.AccountView, str]:
    master = keyformat.generate_key()
    account = await caller.do(
        m.CreateAccount(
            master_key_hash=keyformat.hash_key(master),
            master_key_hint=keyformat.hint(master),
            name="Ada Ltd",
            plan=plan,
        )
    )  # type: ignore[arg-type]
    assert isinstance(account, m.AccountView), account
    return account, master


async def new_key(
    caller: Caller, account: m.AccountView, name: str = "ci", **extra: object
) -> tuple[m.KeyView, str]:
    key = keyformat.generate_key()
    view = await caller.do(
        m.CreateKey(
            account_id=account.account_id,
            name=name,
            secret_hash=keyformat.hash_key(key),
            hint=keyformat.hint(key),
            actor=account.master_key_id,
            **extra,
        )
    )  # type: ignore[arg-type]
    assert isinstance(view, m.KeyView), view
    return view, key


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
        m.RevokeKey(account_id=mine.account_id, key_id=mine.master_key_id, actor=mine.master_key_id)
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

    sub = await js.subscribe(KEY_EVENTS_SUBJECTS, cb=on_event, ordered_consumer=True)
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


async def test_a_batch_gets_one_reply_per_hash_in_order(caller: Caller) -> None:
    account, master = await new_account(caller)
    _, revoked = await new_key(caller, account)
    views = await caller.do(m.ListKeys(account_id=account.account_id))
    assert isinstance(views, m.KeyList)
    revoked_id = next(v.key_id for v in views.keys if v.kind != "master")
    await caller.do(m.RevokeKey(account_id=None, key_id=revoked_id))
    hashes = [
        keyformat.hash_key(master),
        "A" * 64,  # not lowercase hex
        keyformat.hash_key(keyformat.generate_key()),  # well formed, unknown
        keyformat.hash_key(revoked),
        keyformat.hash_key(master),  # twice in a batch: answered twice
    ]
    replies = await caller.check_hashes(hashes)
    assert [type(r).__name__ for r in replies] == [
        "KeyFacts", "Rejected", "Rejected", "KeyFacts", "KeyFacts"
    ]  # fmt: skip
    assert replies[0] == replies[4] and replies[0].account_id == account.account_id  # type: ignore[union-attr]
    assert replies[1].code == m.Code.VALIDATION_ERROR  # type: ignore[union-attr]
    assert replies[2].code == m.Code.INVALID_API_KEY  # type: ignore[union-attr]
    assert replies[3].revoked and replies[3].key_id == revoked_id  # type: ignore[union-attr]
    full = await caller.check_hashes([keyformat.hash_key(master)] * m.MAX_CHECK_BATCH)
    assert len(full) == m.MAX_CHECK_BATCH and all(r == replies[0] for r in full)
    assert await caller.check_hashes([]) == []


@pytest.mark.parametrize(
    ("subject", "payload"),
    [
        (KEYS_COMMANDS, b"not json"),
        (KEYS_COMMANDS, b'{"command": "format_disk"}'),
        (KEYS_COMMANDS, b'{"command": "create_key", "account_id": 7}'),
        (
            KEYS_COMMANDS,
            b'{"command": "regenerate_key", "account_id": null, "key_id": "k",'
            b' "secret_hash": "x", "hint": "y", "grace_seconds": "soon"}',
        ),
        (KEYS_COMMANDS, b""),
        (KEYS_CHECK, b"\xff\xfe"),
        (KEYS_CHECK, b'{"key_hash": 5}'),
        (KEYS_CHECK, b"[]"),
        (KEYS_CHECK, b'{"key_hashes": "0"}'),
        (KEYS_CHECK, b'{"key_hashes": [5]}'),  # one wrong type spoils the message
        (KEYS_CHECK, m.encoder.encode({"key_hashes": ["0" * 64] * (m.MAX_CHECK_BATCH + 1)})),
    ],
)
async def test_malformed_payloads_are_rejected_and_the_service_keeps_working(
    caller: Caller,
    subject: str,
    payload: bytes,
) -> None:
    reply = await caller.raw(subject, payload)
    assert isinstance(reply, m.Rejected), reply
    assert reply.code == m.Code.VALIDATION_ERROR and reply.message
    unknown = await caller.check("aitbc_" + "0" * 49)
    assert isinstance(unknown, m.Rejected) and unknown.code == m.Code.INVALID_API_KEY
    account, master = await new_account(caller)
    facts = await caller.check(master)
    assert isinstance(facts, m.KeyFacts) and facts.account_id == account.account_id


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


async def test_the_edge_client_sends_a_burst_of_checks_as_few_messages(
    caller: Caller, service: Service
) -> None:
    from aitbc_api.pipeline.key_checks import KeyChecks  # the edge's, against the real service

    accounts = [await new_account(caller) for _ in range(30)]
    seen: list[int] = []

    async def spy(msg: Msg) -> None:  # not in the queue group: sees every check
        seen.append(len(m.check_decoder.decode(msg.data).key_hashes))

    sub = await caller.nc.subscribe(KEYS_CHECK, cb=spy)
    await caller.nc.flush()
    client = KeyChecks(caller.nc, timeout=5)
    hashes = [keyformat.hash_key(master) for _, master in accounts]
    unknown = keyformat.hash_key(keyformat.generate_key())
    replies = await asyncio.gather(*(client.check(h) for h in [*hashes, unknown]))
    for (account, _), reply in zip(accounts, replies, strict=False):
        assert isinstance(reply, m.KeyFacts) and reply.account_id == account.account_id
    assert isinstance(replies[-1], m.Rejected) and replies[-1].code == m.Code.INVALID_API_KEY
    # A marker after them: once the spy has it, it has every check message sent before it.
    await caller.nc.publish(KEYS_CHECK, m.encoder.encode(m.CheckKeys([])))
    async with asyncio.timeout(5):
        while len(seen) < 2 or seen[-1] != 0:
            await asyncio.sleep(0.01)
    assert seen == [len(hashes) + 1, 0]  # asked in one turn of the loop: one message
    await sub.unsubscribe()
