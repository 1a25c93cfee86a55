"""The keys service as its callers see it (the edge, the CLI): a client that encodes, requests
and decodes the reply union, a clock the test moves on, and an account or key made in one call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nats.aio.client import Client

from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEYS_CHECK, KEYS_OPERATOR_COMMANDS


class Caller:
    """What the edge and the CLI do: encode, request, decode the reply union."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc

    async def raw(self, subject: str, payload: bytes) -> m.Reply | m.CheckReply:
        reply = await self.nc.request(subject, payload, timeout=5)
        decoder = m.check_reply_decoder if subject == KEYS_CHECK else m.reply_decoder
        return decoder.decode(reply.data)  # type: ignore[no-any-return]

    async def do(self, command: m.AnyCommand, subject: str = KEYS_OPERATOR_COMMANDS) -> m.Reply:
        return await self.raw(subject, m.encoder.encode(command))  # type: ignore[return-value]

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
