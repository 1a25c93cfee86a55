"""Key checks against the keys service in-process, over real NATS and a real database: batches
of hashes, malformed payloads, and the edge's own client bursting checks."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg

from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEYS_CHECK, KEYS_OPERATOR_COMMANDS
from tests.integration.keys.caller import Caller, new_account, new_key


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
        (KEYS_OPERATOR_COMMANDS, b"not json"),
        (KEYS_OPERATOR_COMMANDS, b'{"command": "format_disk"}'),
        (KEYS_OPERATOR_COMMANDS, b'{"command": "create_key", "account_id": 7}'),
        (
            KEYS_OPERATOR_COMMANDS,
            b'{"command": "regenerate_key", "account_id": null, "key_id": "k",'
            b' "secret_hash": "x", "hint": "y", "grace_seconds": "soon"}',
        ),
        (KEYS_OPERATOR_COMMANDS, b""),
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


async def test_the_edge_client_sends_a_burst_of_checks_as_few_messages(caller: Caller) -> None:
    from aitbc_gate.key_checks import KeyChecks  # the edge's, against the real service

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
