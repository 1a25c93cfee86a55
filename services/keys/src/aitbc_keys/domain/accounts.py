"""The decisions about accounts: a command and the state of its account's stream -> new
events. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from aitbc_contracts.events import (
    AccountCreated,
    AnyEvent,
    KeyCreated,
    KeyRevoked,
    MasterKeyDataPlaneChanged,
    PlanChanged,
)
from aitbc_contracts.keys import KeyState, State
from aitbc_contracts.messages import (
    CreateAccount,
    ReplaceMasterKey,
    SetMasterKeyDataPlane,
    SetPlan,
)
from aitbc_keys.domain.rules import (
    NAME_MAX,
    IdFactory,
    ValidationError,
    check_plan,
    check_secret,
    envelope,
    existing_account,
    following,
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
        _master_key(
            envelope(command, now, new_id(), key_id, 1, account_id),
            command.master_key_hash,
            command.master_key_hint,
        ),
    ]


def _master_key(fields: dict[str, Any], secret_hash: str, hint: str) -> KeyCreated:
    """A master key's creation, with the envelope's `fields` (its stream is the key)."""
    return KeyCreated(
        **fields,
        key_id=fields["stream_id"],
        name="master",
        kind="master",
        secret_hash=secret_hash,
        hint=hint,
    )


def replace_master_key(
    state: State | None,
    keys: Iterable[KeyState],
    command: ReplaceMasterKey,
    now: datetime,
    key_id: str,
    new_id: IdFactory,
) -> list[AnyEvent]:
    """Account recovery: a new master key, `key_id`, and the revocation of every master key of
    the account (`keys`: its keys) not revoked yet, saying which key replaced it. An operator's
    decision, for an owner who lost the master key or whose master key was revoked."""
    account = existing_account(state, command.account_id)
    check_secret(command.secret_hash, command.hint)
    if len(command.reason) > NAME_MAX * 5:
        raise ValidationError(f"reason must be at most {NAME_MAX * 5} characters")
    why = f"replaced by the new master key {key_id}" + (
        f": {command.reason}" if command.reason else ""
    )
    revoked: list[AnyEvent] = [
        KeyRevoked(
            **following(key, command, now, new_id),
            key_id=key.key_id,
            reason=why,
        )
        for key in keys
        if key.kind == "master" and not key.revoked and key.account_id == account.account_id
    ]
    made = _master_key(
        envelope(command, now, new_id(), key_id, 1, account.account_id),
        command.secret_hash,
        command.hint,
    )
    return [*revoked, made]


def set_plan(
    state: State | None, command: SetPlan, now: datetime, new_id: IdFactory
) -> list[AnyEvent]:
    account = existing_account(state, command.account_id)
    check_plan(command.plan)
    if command.plan == account.plan:
        return []
    return [
        PlanChanged(
            **following(account, command, now, new_id),
            plan=command.plan,
            previous_plan=account.plan,
        )
    ]


def set_master_key_data_plane(
    state: State | None, command: SetMasterKeyDataPlane, now: datetime, new_id: IdFactory
) -> list[AnyEvent]:
    """Let the account's master key call the forwarded routes, or keep it to managing keys."""
    account = existing_account(state, command.account_id)
    if command.data_plane == account.master_key_data_plane:
        return []
    return [
        MasterKeyDataPlaneChanged(
            **following(account, command, now, new_id),
            data_plane=command.data_plane,
        )
    ]
