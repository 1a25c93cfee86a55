"""The decisions about keys: a command and the state of its key's stream (or its account's)
-> new events. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aitbc_contracts.events import AnyEvent, KeyCreated, KeyRegenerated, KeyRevoked
from aitbc_contracts.keys import KeyState, State
from aitbc_contracts.messages import CreateKey, RegenerateKey, RevokeKey
from aitbc_contracts.powers import Power, may_revoke_master
from aitbc_keys.domain.restrictions import (
    created_restricted,
    given,
    may_act_on,
    may_give,
    may_hold,
    may_last,
)
from aitbc_keys.domain.rules import (
    GRACE_MAX,
    MAX_KEYS_PER_ACCOUNT,
    NAME_MAX,
    RATE_LIMIT_MAX,
    Forbidden,
    IdFactory,
    KeyRevokedError,
    ValidationError,
    check_room,
    check_secret,
    envelope,
    existing_account,
    following,
    shown_name,
    visible_key,
)


def create_key(
    state: State | None,
    command: CreateKey,
    now: datetime,
    key_id: str,
    new_id: IdFactory,
    live_keys: int = 0,
    max_keys: int = MAX_KEYS_PER_ACCOUNT,
    root: KeyState | None = None,
) -> list[AnyEvent]:
    """`state`: the account's; `live_keys`: how many of its keys are neither revoked nor
    expired, of which it may hold `max_keys`; `root`: the acting root key, if one acts
    (aitbc_keys.domain.restrictions). A key created restricted has its KeyRestricted right
    after its KeyCreated, in the same commit."""
    account = existing_account(state, command.account_id)
    name = shown_name(command.name, "name", required=True)
    check_secret(command.secret_hash, command.hint)
    expires_at = command.expires_at
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValidationError("expires_at needs a timezone offset, e.g. Z for UTC")
        try:
            expires_at = expires_at.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:00-05:00: no time in UTC that a date holds
            raise ValidationError("expires_at is out of range") from None
        if expires_at <= now:
            raise ValidationError("expires_at must be in the future")
    if command.rate_limit is not None and not 1 <= command.rate_limit <= RATE_LIMIT_MAX:
        raise ValidationError(f"rate_limit must be 1..{RATE_LIMIT_MAX}")
    kept = given(command)
    may_give(root, kept)
    may_last(root, expires_at)
    check_room(live_keys, max_keys)
    created: list[AnyEvent] = [
        KeyCreated(
            **envelope(command, now, new_id(), key_id, 1, account.account_id),
            key_id=key_id,
            name=name,
            kind="standard",
            secret_hash=command.secret_hash,
            hint=command.hint,
            expires_at=expires_at,
            rate_limit=command.rate_limit,
        )
    ]
    return created + created_restricted(command, kept, now, new_id(), key_id, account.account_id)


def revoke_key(
    state: State | None,
    command: RevokeKey,
    now: datetime,
    new_id: IdFactory,
    power: Power,
    root: KeyState | None = None,
) -> list[AnyEvent]:
    """`power`: the sender's, from the subject the command came on (aitbc_contracts.powers);
    `root`: the acting root key, if one acts."""
    key = visible_key(state, command.key_id, command.account_id)
    may_act_on(root, key)
    if key.revoked:
        return []  # idempotent: revoking twice is what the caller wanted anyway
    if key.kind == "master" and not may_revoke_master(power):
        raise Forbidden("a master key can only be revoked by an operator")
    if len(command.reason) > NAME_MAX * 5:
        raise ValidationError(f"reason must be at most {NAME_MAX * 5} characters")
    return [
        KeyRevoked(
            **following(key, command, now, new_id),
            key_id=key.key_id,
            reason=command.reason,
        )
    ]


def regenerate_key(
    state: State | None,
    command: RegenerateKey,
    now: datetime,
    new_id: IdFactory,
    root: KeyState | None = None,
) -> list[AnyEvent]:
    """A new secret for the key. The fold keeps one replaced secret, the one this replaces, and
    only when it is given a grace period: every older secret ends here, whatever grace it had
    (a second regenerate after a leak ends the first one's grace)."""
    key = visible_key(state, command.key_id, command.account_id)
    may_act_on(root, key)
    may_hold(root, key)
    if key.revoked:
        raise KeyRevokedError(f"key {key.key_id} is revoked and cannot be regenerated")
    if not 0 <= command.grace_seconds <= GRACE_MAX.total_seconds():
        raise ValidationError(f"grace_seconds must be 0..{int(GRACE_MAX.total_seconds())}")
    check_secret(command.secret_hash, command.hint)
    if command.secret_hash == key.secret_hash:
        raise ValidationError("the new secret must differ from the current one")
    grace_end = now + timedelta(seconds=command.grace_seconds) if command.grace_seconds else None
    return [
        KeyRegenerated(
            **following(key, command, now, new_id),
            key_id=key.key_id,
            secret_hash=command.secret_hash,
            hint=command.hint,
            previous_hash=key.secret_hash,
            previous_valid_until=grace_end,
        )
    ]
