"""Commands are authorised by who sent them: the subject a command arrives on, which the real
nats-server config lets only the right roles publish on, never a field the sender fills in.

The keys service runs in this process as its own roles (`keys`, and `keys-writer` for its event
publisher); each client connects as the role it plays."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from aitbc_cli.main import run
from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.subjects import (
    KEYS_OPERATOR_COMMANDS,
    KEYS_OWNER_COMMANDS,
    KEYS_READ_COMMANDS,
)
from aitbc_infra.nats_server import NatsServer
from aitbc_keys.main import Service, running_service
from aitbc_keys.settings import Settings

REFUSED_WAIT = 1.0  # a refused publish gets no answer: how long to wait for none


class RoleClient:
    """A connection as one role, noting the publishes the server refused it."""

    def __init__(self, nc: Client, violations: list[str]) -> None:
        self.nc = nc
        self.violations = violations

    async def ask(self, subject: str, command: m.AnyCommand) -> m.Reply:
        reply = await self.nc.request(subject, m.encoder.encode(command), timeout=10)
        return m.reply_decoder.decode(reply.data)  # type: ignore[no-any-return]

    async def refused(self, subject: str, command: m.AnyCommand) -> None:
        """The server refuses the publish: no answer comes, and it says why."""
        with pytest.raises(TimeoutError):
            await self.nc.request(subject, m.encoder.encode(command), timeout=REFUSED_WAIT)
        assert any(
            "permissions violation" in v.lower() and subject in v for v in self.violations
        ), self.violations


AsRole = Callable[[str], Awaitable[RoleClient]]


@pytest.fixture
async def service(tmp_path: Path, own_nats: NatsServer) -> AsyncIterator[Service]:
    settings = Settings(
        nats=own_nats.access("keys"),
        nats_writer=own_nats.access("keys-writer"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}",
    )
    async with running_service(settings, relay_poll_interval=30) as svc:
        yield svc


@pytest.fixture
async def as_role(service: Service, own_nats: NatsServer) -> AsyncIterator[AsRole]:
    """New connections as a role's, closed after the test."""
    opened: list[Client] = []

    async def connect(role: str) -> RoleClient:
        violations: list[str] = []

        async def on_error(error: Exception) -> None:
            violations.append(str(error))

        nc = await nats.connect(**own_nats.options(role), error_cb=on_error)
        opened.append(nc)
        return RoleClient(nc, violations)

    yield connect
    for nc in opened:
        await nc.close()


def secret() -> tuple[str, str]:
    key = keyformat.generate_key()
    return keyformat.hash_key(key), keyformat.hint(key)


async def sign_up(edge: RoleClient) -> m.AccountView:
    key_hash, hint = secret()
    command = m.CreateAccount(master_key_hash=key_hash, master_key_hint=hint, actor="signup")
    account = await edge.ask(KEYS_OWNER_COMMANDS, command)
    assert isinstance(account, m.AccountView), account
    return account


def forbidden(reply: m.Reply) -> bool:
    return isinstance(reply, m.Rejected) and reply.code == m.Code.FORBIDDEN


async def test_the_owner_subject_is_one_named_account_and_no_operator_command(
    as_role: AsRole,
) -> None:
    edge, admin = await as_role("edge"), await as_role("admin")
    account = await sign_up(edge)
    me = account.master_key_id  # the edge names the caller's key as the actor
    key_hash, hint = secret()
    mine = await edge.ask(
        KEYS_OWNER_COMMANDS,
        m.CreateKey(
            account_id=account.account_id, name="ci", secret_hash=key_hash, hint=hint, actor=me
        ),
    )
    assert isinstance(mine, m.KeyView) and mine.status == "active"

    key_hash, hint = secret()
    for command in (
        m.SetPlan(account_id=account.account_id, plan="enterprise", actor=me),
        m.RebuildProjections(actor=me),
        m.SetPlan(account_id=account.account_id, plan="enterprise", actor=m.OPERATOR),
        m.CreateAccount(master_key_hash=key_hash, master_key_hint=hint, plan="enterprise"),
        m.GetKey(account_id=None, key_id=mine.key_id, actor=me),
        m.ListKeyEvents(account_id=None, key_id=mine.key_id, actor=me),
        m.RevokeKey(account_id=None, key_id=mine.key_id, actor=me),
        m.RevokeKey(account_id=account.account_id, key_id=mine.key_id, actor=m.OPERATOR),
        m.RevokeKey(account_id=account.account_id, key_id=account.master_key_id, actor=me),
    ):
        reply = await edge.ask(KEYS_OWNER_COMMANDS, command)
        assert forbidden(reply), (command, reply)

    # Nothing of it happened; the same commands from an operator do.
    got = await admin.ask(KEYS_READ_COMMANDS, m.GetAccount(account_id=account.account_id))
    assert isinstance(got, m.AccountView) and got.plan == "free"
    keys = await admin.ask(KEYS_READ_COMMANDS, m.ListKeys(account_id=account.account_id))
    assert isinstance(keys, m.KeyList) and {k.status for k in keys.keys} == {"active"}
    upgraded = await admin.ask(
        KEYS_OPERATOR_COMMANDS, m.SetPlan(account_id=account.account_id, plan="enterprise")
    )
    assert isinstance(upgraded, m.AccountView) and upgraded.plan == "enterprise"
    revoked = await admin.ask(
        KEYS_OPERATOR_COMMANDS, m.RevokeKey(account_id=None, key_id=account.master_key_id)
    )
    assert isinstance(revoked, m.KeyView) and revoked.status == "revoked"


async def test_the_read_subject_answers_look_ups_and_refuses_changes(as_role: AsRole) -> None:
    edge, auditor, usage = await as_role("edge"), await as_role("auditor"), await as_role("usage")
    account = await sign_up(edge)
    master = account.master_key_id

    looked_up = await usage.ask(KEYS_READ_COMMANDS, m.GetAccount(account_id=account.account_id))
    assert looked_up == account
    key = await auditor.ask(KEYS_READ_COMMANDS, m.GetKey(account_id=None, key_id=master))
    assert isinstance(key, m.KeyView) and key.account_id == account.account_id
    history = await auditor.ask(KEYS_READ_COMMANDS, m.ListKeyEvents(account_id=None, key_id=master))
    assert isinstance(history, m.KeyHistory) and len(history.events) == 1

    key_hash, hint = secret()
    for command in (
        m.CreateKey(account_id=account.account_id, name="x", secret_hash=key_hash, hint=hint),
        m.RevokeKey(account_id=None, key_id=master),
        m.SetPlan(account_id=account.account_id, plan="enterprise"),
        m.RebuildProjections(),
        m.CreateAccount(master_key_hash=key_hash, master_key_hint=hint),
    ):
        reply = await auditor.ask(KEYS_READ_COMMANDS, command)
        assert forbidden(reply), (command, reply)
        assert KEYS_READ_COMMANDS in reply.message and "look-ups only" in reply.message  # type: ignore[union-attr]
    still = await auditor.ask(KEYS_READ_COMMANDS, m.ListKeys(account_id=account.account_id))
    assert isinstance(still, m.KeyList) and [k.status for k in still.keys] == ["active"]


async def test_the_server_lets_each_role_publish_only_on_its_powers_subjects(
    as_role: AsRole,
) -> None:
    edge, usage, auditor = await as_role("edge"), await as_role("usage"), await as_role("auditor")
    account = await sign_up(edge)
    upgrade = m.SetPlan(account_id=account.account_id, plan="enterprise")
    revoke = m.RevokeKey(account_id=None, key_id=account.master_key_id)

    await edge.refused(KEYS_OPERATOR_COMMANDS, upgrade)
    await edge.refused(KEYS_OPERATOR_COMMANDS, revoke)
    await usage.refused(KEYS_OWNER_COMMANDS, revoke)
    await usage.refused(KEYS_OPERATOR_COMMANDS, upgrade)
    await auditor.refused(KEYS_OWNER_COMMANDS, revoke)
    await auditor.refused(KEYS_OPERATOR_COMMANDS, upgrade)

    # The connections were not closed by the refusals, and nothing changed.
    got = await usage.ask(KEYS_READ_COMMANDS, m.GetAccount(account_id=account.account_id))
    assert isinstance(got, m.AccountView) and got.plan == "free"
    key = await auditor.ask(
        KEYS_READ_COMMANDS, m.GetKey(account_id=None, key_id=account.master_key_id)
    )
    assert isinstance(key, m.KeyView) and key.status == "active"


async def aitbc(own_nats: NatsServer, role: str, *argv: str) -> tuple[int, str, str]:
    """The `aitbc` command with `role`'s credentials, in a thread (it runs its own loop)."""
    assert own_nats.credentials is not None
    creds = str(own_nats.credentials.file(role))
    out, err = io.StringIO(), io.StringIO()
    full = ["--nats-url", own_nats.url, "--creds", creds, "--timeout", "10", *argv]
    code = await asyncio.to_thread(run, full, None, out, err)
    return code, out.getvalue(), err.getvalue()


async def test_the_cli_with_an_auditors_credentials_lists_but_cannot_revoke(
    as_role: AsRole,
    own_nats: NatsServer,
) -> None:
    account = await sign_up(await as_role("edge"))
    master = account.master_key_id

    code, out, err = await aitbc(
        own_nats, "auditor", "keys", "list", "--account", account.account_id
    )
    assert code == 0, err
    assert master in out and "active" in out

    started = asyncio.get_running_loop().time()
    code, out, err = await aitbc(own_nats, "auditor", "keys", "revoke", master)
    assert asyncio.get_running_loop().time() - started < 5  # refused at once, not timed out
    creds = own_nats.credentials.file("auditor")  # type: ignore[union-attr]
    assert (code, out) == (1, "")
    assert err == (
        f"aitbc: error: the NATS credentials in use ({creds}) may not send operator commands "
        f"(permissions violation on {KEYS_OPERATOR_COMMANDS}): use the admin's credentials "
        "(--creds or NATS_CREDS)\n"
    )
    code, out, err = await aitbc(
        own_nats, "auditor", "accounts", "set-plan", account.account_id, "pro"
    )
    assert code == 1 and "may not send operator commands" in err

    code, out, err = await aitbc(own_nats, "admin", "keys", "revoke", master, "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "revoked"
