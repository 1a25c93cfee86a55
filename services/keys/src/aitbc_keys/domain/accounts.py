"""The decisions about accounts: a command and the state of its account's stream -> new
events. Pure: no I/O."""

from __future__ import annotations

from datetime import datetime

from aitbc_contracts.events import AccountCreated, AnyEvent, KeyCreated, PlanChanged
from aitbc_contracts.keys import State
from aitbc_contracts.messages import CreateAccount, SetPlan
from aitbc_keys.domain.rules import (
    IdFactory,
    check_plan,
    check_secret,
    envelope,
    existing_account,
    shown_name,
)


def create_account(
    command: CreateAccount, now: datetime, account_id: str, key_id: str, new_id: IdFactory
) -> list[AnyEvent]:
    check_plan(command.plan)
    check_secret(command.master_key_hash, command.master_key_hint)
    name = shown_name(command.name, "name", required=False)
    return [
        AccountCreated(
            **envelope(command, now, new_id(), account_id, 1, account_id),
            name=name,
            plan=command.plan,
        ),
        KeyCreated(
            **envelope(command, now, new_id(), key_id, 1, account_id),
            key_id=key_id,
            name="master",
            kind="master",
            secret_hash=command.master_key_hash,
            hint=command.master_key_hint,
        ),
    ]


def set_plan(
    state: State | None, command: SetPlan, now: datetime, new_id: IdFactory
) -> list[AnyEvent]:
    account = existing_account(state, command.account_id)
    check_plan(command.plan)
    if command.plan == account.plan:
        return []
    return [
        PlanChanged(
            **envelope(
                command, now, new_id(), account.account_id, account.version + 1, account.account_id
            ),
            plan=command.plan,
            previous_plan=account.plan,
        )
    ]
