"""Which command needs which power (aitbc_contracts.powers), as the keys service applies it and
as the CLI picks its subject: the power is the subject's, never a field of the command."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from aitbc_cli.bus import PublishRefused, RefusedPublishes, refused_for_people
from aitbc_contracts import messages as m
from aitbc_contracts import subjects as s
from aitbc_contracts.powers import NEEDS, SUBJECTS, Power, operator_subject, refusal
from aitbc_keys.domain import Forbidden
from aitbc_keys.service_layer.handlers import handle
from aitbc_runtime.bus_access import BusAccess
from tests.unit.test_keys_service_layer import H1, H2, FakeUnitOfWork

ACC, KEY = "acc_0123456789abcdef", "key_0123456789abcdef"
OWNER_ACTOR = "key_fedcba9876543210"  # the edge names the caller's key as the actor

LOOKUPS: list[m.Command] = [
    m.GetAccount(account_id=ACC, actor=OWNER_ACTOR),
    m.ListKeys(account_id=ACC, actor=OWNER_ACTOR),
    m.GetKey(account_id=ACC, key_id=KEY, actor=OWNER_ACTOR),
    m.ListKeyEvents(account_id=ACC, key_id=KEY, actor=OWNER_ACTOR),
]
ANY_ACCOUNT_LOOKUPS: list[m.Command] = [
    m.GetKey(account_id=None, key_id=KEY, actor=OWNER_ACTOR),
    m.ListKeyEvents(account_id=None, key_id=KEY, actor=OWNER_ACTOR),
]
OWNER_CHANGES: list[m.Command] = [
    m.CreateAccount(master_key_hash=H1, master_key_hint="aitbc_1", actor="signup"),
    m.CreateKey(account_id=ACC, name="ci", secret_hash=H2, hint="aitbc_2", actor=OWNER_ACTOR),
    m.RevokeKey(account_id=ACC, key_id=KEY, actor=OWNER_ACTOR),
    m.RegenerateKey(account_id=ACC, key_id=KEY, secret_hash=H2, hint="a", actor=OWNER_ACTOR),
    m.SetMasterKeyDataPlane(account_id=ACC, data_plane=False, actor=OWNER_ACTOR),
    m.RestrictKey(account_id=ACC, key_id=KEY, scopes=("jobs:read",), actor=OWNER_ACTOR),
]
OPERATOR_ONLY: list[m.Command] = [
    m.SetPlan(account_id=ACC, plan="enterprise", actor=OWNER_ACTOR),
    m.RebuildProjections(actor=OWNER_ACTOR),
    m.ReplaceMasterKey(account_id=ACC, secret_hash=H2, hint="aitbc_2", actor=OWNER_ACTOR),
]


def name(command: m.Command) -> str:
    return type(command).__name__


def test_every_command_of_the_contract_has_the_power_it_needs() -> None:
    assert set(NEEDS) == set(m.AnyCommand.__args__)  # type: ignore[attr-defined]
    assert {type(c) for c in LOOKUPS + OWNER_CHANGES + OPERATOR_ONLY} == set(NEEDS)


def test_each_power_has_its_own_subject() -> None:
    assert SUBJECTS == {
        Power.READ: s.KEYS_READ_COMMANDS,
        Power.OWNER: s.KEYS_OWNER_COMMANDS,
        Power.OPERATOR: s.KEYS_OPERATOR_COMMANDS,
    }


@pytest.mark.parametrize("command", LOOKUPS + ANY_ACCOUNT_LOOKUPS, ids=name)
def test_the_read_subject_carries_look_ups_of_any_account(command: m.Command) -> None:
    assert refusal(command, Power.READ) is None


@pytest.mark.parametrize("command", OWNER_CHANGES + OPERATOR_ONLY, ids=name)
def test_the_read_subject_refuses_every_change(command: m.Command) -> None:
    why = refusal(command, Power.READ)
    assert why is not None and s.KEYS_READ_COMMANDS in why and "look-ups only" in why


@pytest.mark.parametrize("command", LOOKUPS + OWNER_CHANGES, ids=name)
def test_an_owner_may_look_up_and_change_its_named_account(command: m.Command) -> None:
    assert refusal(command, Power.OWNER) is None


@pytest.mark.parametrize("command", OPERATOR_ONLY, ids=name)
def test_an_owner_may_not_send_an_operators_command(command: m.Command) -> None:
    why = refusal(command, Power.OWNER)
    assert why is not None and "operator's command" in why and s.KEYS_OWNER_COMMANDS in why


@pytest.mark.parametrize(
    "command",
    [
        *ANY_ACCOUNT_LOOKUPS,
        m.RevokeKey(account_id=None, key_id=KEY, actor=OWNER_ACTOR),
        m.RegenerateKey(account_id=None, key_id=KEY, secret_hash=H2, hint="a", actor="x"),
    ],
    ids=name,
)
def test_an_owner_must_name_its_account(command: m.Command) -> None:
    why = refusal(command, Power.OWNER)
    assert why is not None and "account_id" in why


@pytest.mark.parametrize("command", LOOKUPS + OWNER_CHANGES, ids=name)
def test_an_owner_claiming_to_be_the_operator_is_refused(command: m.Command) -> None:
    claiming = msgspec.structs.replace(command, actor=m.OPERATOR)
    why = refusal(claiming, Power.OWNER)
    assert why is not None and "reserved for operators" in why


def test_an_owner_signs_up_on_the_free_plan_only() -> None:
    command = m.CreateAccount(master_key_hash=H1, master_key_hint="a", actor="signup", plan="pro")
    why = refusal(command, Power.OWNER)
    assert why is not None and "free" in why
    assert refusal(command, Power.OPERATOR) is None


@pytest.mark.parametrize(
    "command", LOOKUPS + ANY_ACCOUNT_LOOKUPS + OWNER_CHANGES + OPERATOR_ONLY, ids=name
)
def test_an_operator_may_do_anything_whatever_the_actor(command: m.Command) -> None:
    assert refusal(command, Power.OPERATOR) is None


@pytest.mark.parametrize("command", LOOKUPS + ANY_ACCOUNT_LOOKUPS, ids=name)
def test_the_cli_sends_look_ups_on_the_read_subject(command: m.Command) -> None:
    assert operator_subject(command) == s.KEYS_READ_COMMANDS


@pytest.mark.parametrize("command", OWNER_CHANGES + OPERATOR_ONLY, ids=name)
def test_the_cli_sends_changes_on_the_operator_subject(command: m.Command) -> None:
    assert operator_subject(command) == s.KEYS_OPERATOR_COMMANDS


# --- the service layer applies the rule before any handler runs ------------------------------


async def sign_up(uow: FakeUnitOfWork) -> m.AccountView:
    command = m.CreateAccount(master_key_hash=H1, master_key_hint="aitbc_1", actor="signup")
    account = await handle(command, uow, Power.OWNER)
    assert isinstance(account, m.AccountView)
    return account


async def test_a_refused_command_changes_nothing() -> None:
    uow = FakeUnitOfWork()
    account = await sign_up(uow)
    for command, power in (
        (m.SetPlan(account_id=account.account_id, plan="enterprise", actor="x"), Power.OWNER),
        (
            m.CreateKey(account_id=account.account_id, name="a", secret_hash=H2, hint="h"),
            Power.READ,
        ),
        (m.RevokeKey(account_id=None, key_id=account.master_key_id, actor="x"), Power.OWNER),
    ):
        with pytest.raises(Forbidden):
            await handle(command, uow, power)
    assert uow.commits == 1 and len(uow.log) == 2  # the sign-up only


async def test_only_an_operator_may_revoke_a_master_key_whatever_the_actor_says() -> None:
    uow = FakeUnitOfWork()
    account = await sign_up(uow)
    as_owner = m.RevokeKey(
        account_id=account.account_id, key_id=account.master_key_id, actor=OWNER_ACTOR
    )
    with pytest.raises(Forbidden, match="master key"):
        await handle(as_owner, uow, Power.OWNER)
    revoked = await handle(as_owner, uow, Power.OPERATOR)  # the actor is only recorded
    assert isinstance(revoked, m.KeyView) and revoked.status == "revoked"
    assert uow.log[-1].actor == OWNER_ACTOR


# --- the CLI: a publish the server refuses is one clear line, not a timeout ------------------


async def test_a_refused_publish_ends_the_wait_at_once() -> None:
    refusals = RefusedPublishes()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(refusals.unless_refused(s.KEYS_OPERATOR_COMMANDS, wait(never)))
    await refusals.note(Exception('nats: permissions violation for publish to "aitbc.other"'))
    await refusals.note(Exception("nats: some other error"))
    await asyncio.sleep(0)
    assert not waiting.done()
    await refusals.note(
        Exception(f'nats: permissions violation for publish to "{s.KEYS_OPERATOR_COMMANDS}"')
    )
    with pytest.raises(PublishRefused) as refused:
        await asyncio.wait_for(waiting, 1)
    assert refused.value.subject == s.KEYS_OPERATOR_COMMANDS
    assert never.cancelled()


async def test_work_done_first_is_its_result() -> None:
    async def work() -> str:
        return "reply"

    assert await RefusedPublishes().unless_refused(s.KEYS_READ_COMMANDS, work()) == "reply"


async def wait(future: asyncio.Future[None]) -> None:
    await future


def test_the_refusal_names_the_credentials_the_commands_and_who_may() -> None:
    access = BusAccess("nats://127.0.0.1:4222", creds="/data/creds/auditor.nk")
    line = refused_for_people(PublishRefused(s.KEYS_OPERATOR_COMMANDS), access)
    assert line == (
        "the NATS credentials in use (/data/creds/auditor.nk) may not send operator commands "
        f"(permissions violation on {s.KEYS_OPERATOR_COMMANDS}): use the admin's credentials "
        "(--creds or NATS_CREDS)"
    )
    line = refused_for_people(PublishRefused(s.KEYS_READ_COMMANDS), access)
    assert "may not send read commands" in line and "the auditor's or the admin's" in line
