"""What every decision of the keys domain shares: its errors, each mapped to a wire code in one
place (its `code`), the validation of what commands carry, and the views of the fold it decides
on. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from aitbc_contracts.events import AnyEvent, Plan
from aitbc_contracts.keys import AccountState, KeyState, State, evolve
from aitbc_contracts.messages import Code, Command, KeyView
from aitbc_contracts.names import unsafe_character

PLANS: tuple[str, ...] = get_args(Plan)
NAME_MAX = 100
RATE_LIMIT_MAX = 1_000_000
GRACE_MAX = timedelta(days=7)
HASH_LENGTH = 64  # hex SHA-256
HINT_MAX = 32
MAX_KEYS_PER_ACCOUNT = 100  # live keys (neither revoked nor expired), the master key included

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


class TooManyKeys(KeysError):
    code = Code.TOO_MANY_KEYS


# --- validation ------------------------------------------------------------------------------


def check_plan(plan: str) -> None:
    if plan not in PLANS:
        raise ValidationError(f"plan must be one of {', '.join(PLANS)}")


def check_secret(secret_hash: str, hint: str) -> None:
    if len(secret_hash) != HASH_LENGTH or any(c not in "0123456789abcdef" for c in secret_hash):
        raise ValidationError("secret_hash must be a lowercase hex SHA-256 (64 characters)")
    if not hint or len(hint) > HINT_MAX or unsafe_character(hint):
        raise ValidationError(f"hint must be 1..{HINT_MAX} printable characters")


def shown_name(name: str, what: str, required: bool) -> str:
    """A name as it is kept (trimmed), if people can read it safely: no control or format
    characters (aitbc_contracts.names), at most NAME_MAX characters, and some if `required`."""
    name = name.strip()
    if required and not 1 <= len(name) <= NAME_MAX:
        raise ValidationError(f"{what} must be 1..{NAME_MAX} characters")
    if len(name) > NAME_MAX:
        raise ValidationError(f"{what} must be at most {NAME_MAX} characters")
    why = unsafe_character(name)
    if why is not None:
        raise ValidationError(f"{what} may not hold control or format characters ({why})")
    return name


def check_room(live_keys: int, max_keys: int) -> None:
    """An account makes a key only while it holds fewer than `max_keys` live ones."""
    if live_keys >= max_keys:
        raise TooManyKeys(
            f"the account already holds {live_keys} live keys, the most it may hold "
            f"({max_keys}): revoke one it no longer uses first"
        )


# --- the fold, as the decisions see it -------------------------------------------------------


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


def envelope(
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


def following(
    state: AccountState | KeyState, command: Command, now: datetime, new_id: IdFactory
) -> dict[str, Any]:
    """The envelope of the next event of `state`'s stream (the account's, or the key's)."""
    stream_id = state.key_id if isinstance(state, KeyState) else state.account_id
    return envelope(command, now, new_id(), stream_id, state.version + 1, state.account_id)
