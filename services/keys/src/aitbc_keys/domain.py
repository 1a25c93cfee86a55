"""What the keys service decides: a command and the state of its stream -> new events; no I/O.

The state is the one fold of the key events (aitbc_contracts.keys): every view of the events,
and these decisions, take their meaning from it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from aitbc_contracts.events import (
    AccountCreated,
    AnyEvent,
    KeyCreated,
    KeyRegenerated,
    KeyRevoked,
    Plan,
    PlanChanged,
)
from aitbc_contracts.keys import AccountState, KeyState, State, evolve
from aitbc_contracts.messages import (
    Code,
    Command,
    CreateAccount,
    CreateKey,
    KeyView,
    RegenerateKey,
    RevokeKey,
    SetPlan,
)
from aitbc_contracts.powers import Power, may_revoke_master

PLANS: tuple[str, ...] = get_args(Plan)
NAME_MAX = 100
RATE_LIMIT_MAX = 1_000_000
GRACE_MAX = timedelta(days=7)
HASH_LENGTH = 64  # hex SHA-256
HINT_MAX = 32

IdFactory = Callable[[], str]
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The clock the service decides by (tests give it another)."""
    return datetime.now(UTC)


# --- errors: one family, each mapped to a wire code in one place (its `code`) ---------------


class KeysError(Exception):
    code = Code.INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(KeysError):
    code = Code.NOT_FOUND


class KeyRevokedError(KeysError):
    code = Code.CONFLICT


class ValidationError(KeysError):
    code = Code.VALIDATION_ERROR


class Forbidden(KeysError):
    code = Code.FORBIDDEN


# --- validation helpers ------------------------------------------------------------------------


def _check_plan(plan: str) -> None:
    if plan not in PLANS:
        raise ValidationError(f"plan must be one of {', '.join(PLANS)}")


def _check_secret(secret_hash: str, hint: str) -> None:
    if len(secret_hash) != HASH_LENGTH or any(c not in "0123456789abcdef" for c in secret_hash):
        raise ValidationError("secret_hash must be a lowercase hex SHA-256 (64 characters)")
    if not hint or len(hint) > HINT_MAX:
        raise ValidationError(f"hint must be 1..{HINT_MAX} characters")


def _key_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise ValidationError(f"name must be 1..{NAME_MAX} characters")
    return name


def visible_key(state: State | None, key_id: str, account_id: str | None) -> KeyState:
    """The key, if the asker may see it: another account's key is as good as absent."""
    if not isinstance(state, KeyState) or (
        account_id is not None and state.account_id != account_id
    ):
        raise NotFound(f"key {key_id} not found")
    return state


def existing_account(state: State | None, account_id: str) -> AccountState:
    if not isinstance(state, AccountState):
        raise NotFound(f"account {account_id} not found")
    return state


def fold_streams(states: dict[str, State], history: Iterable[AnyEvent]) -> int:
    """Fold events of many streams (oldest first) into each stream's state; returns how many."""
    count = 0
    for event in history:
        state = evolve(states.get(event.stream_id), event)
        if state is not None:
            states[event.stream_id] = state
        count += 1
    return count


def secrets_of(key: KeyState) -> dict[str, datetime | None]:
    """The secrets a view keeps for a key, each with its end (None: until replaced): the current
    one and the one replaced last while it has a grace period. A view that looks one up still
    asks whether its grace has ended (aitbc_contracts.keys.expired)."""
    secrets: dict[str, datetime | None] = {key.secret_hash: None}
    if key.previous_hash is not None and key.previous_valid_until is not None:
        secrets[key.previous_hash] = key.previous_valid_until
    return secrets


# What an owner sees of a key: the fields KeyView shares with KeyState, and its status.
_SHOWN = tuple(f for f in KeyView.__struct_fields__ if f not in ("status", "last_used_at"))


def key_view(key: KeyState, now: datetime) -> KeyView:
    """A key as its owner sees it; its status is the fold's (KeyState.status)."""
    return KeyView(status=key.status(now), **{field: getattr(key, field) for field in _SHOWN})


# --- decide: command + state -> new events ------------------------------------------------------


def _envelope(
    command: Command, now: datetime, event_id: str, stream_id: str, version: int, account_id: str
) -> dict[str, Any]:
    """The fields every event shares: which stream, which version, when, who and why."""
    return {
        "event_id": event_id,
        "stream_id": stream_id,
        "version": version,
        "account_id": account_id,
        "occurred_at": now,
        "actor": command.actor,
        "request_id": command.request_id,
    }


def create_account(
    command: CreateAccount, now: datetime, account_id: str, key_id: str, new_id: IdFactory
) -> list[AnyEvent]:
    _check_plan(command.plan)
    _check_secret(command.master_key_hash, command.master_key_hint)
    name = command.name.strip()
    if len(name) > NAME_MAX:
        raise ValidationError(f"name must be at most {NAME_MAX} characters")
    return [
        AccountCreated(
            **_envelope(command, now, new_id(), account_id, 1, account_id),
            name=name,
            plan=command.plan,
        ),
        KeyCreated(
            **_envelope(command, now, new_id(), key_id, 1, account_id),
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
    _check_plan(command.plan)
    if command.plan == account.plan:
        return []
    return [
        PlanChanged(
            **_envelope(
                command, now, new_id(), account.account_id, account.version + 1, account.account_id
            ),
            plan=command.plan,
            previous_plan=account.plan,
        )
    ]


def create_key(
    state: State | None, command: CreateKey, now: datetime, key_id: str, new_id: IdFactory
) -> list[AnyEvent]:
    account = existing_account(state, command.account_id)
    name = _key_name(command.name)
    _check_secret(command.secret_hash, command.hint)
    expires_at = command.expires_at
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValidationError("expires_at needs a timezone offset, e.g. Z for UTC")
        expires_at = expires_at.astimezone(UTC)
        if expires_at <= now:
            raise ValidationError("expires_at must be in the future")
    if command.rate_limit is not None and not 1 <= command.rate_limit <= RATE_LIMIT_MAX:
        raise ValidationError(f"rate_limit must be 1..{RATE_LIMIT_MAX}")
    return [
        KeyCreated(
            **_envelope(command, now, new_id(), key_id, 1, account.account_id),
            key_id=key_id,
            name=name,
            kind="standard",
            secret_hash=command.secret_hash,
            hint=command.hint,
            expires_at=expires_at,
            rate_limit=command.rate_limit,
        )
    ]


def revoke_key(
    state: State | None, command: RevokeKey, now: datetime, new_id: IdFactory, power: Power
) -> list[AnyEvent]:
    """`power`: the sender's, from the subject the command came on (aitbc_contracts.powers)."""
    key = visible_key(state, command.key_id, command.account_id)
    if key.revoked:
        return []  # idempotent: revoking twice is what the caller wanted anyway
    if key.kind == "master" and not may_revoke_master(power):
        raise Forbidden("a master key can only be revoked by an operator")
    if len(command.reason) > NAME_MAX * 5:
        raise ValidationError(f"reason must be at most {NAME_MAX * 5} characters")
    return [
        KeyRevoked(
            **_envelope(command, now, new_id(), key.key_id, key.version + 1, key.account_id),
            key_id=key.key_id,
            reason=command.reason,
        )
    ]


def regenerate_key(
    state: State | None, command: RegenerateKey, now: datetime, new_id: IdFactory
) -> list[AnyEvent]:
    key = visible_key(state, command.key_id, command.account_id)
    if key.revoked:
        raise KeyRevokedError(f"key {key.key_id} is revoked and cannot be regenerated")
    if not 0 <= command.grace_seconds <= GRACE_MAX.total_seconds():
        raise ValidationError(f"grace_seconds must be 0..{int(GRACE_MAX.total_seconds())}")
    _check_secret(command.secret_hash, command.hint)
    if command.secret_hash == key.secret_hash:
        raise ValidationError("the new secret must differ from the current one")
    grace_end = now + timedelta(seconds=command.grace_seconds) if command.grace_seconds else None
    return [
        KeyRegenerated(
            **_envelope(command, now, new_id(), key.key_id, key.version + 1, key.account_id),
            key_id=key.key_id,
            secret_hash=command.secret_hash,
            hint=command.hint,
            previous_hash=key.secret_hash,
            previous_valid_until=grace_end,
        )
    ]
