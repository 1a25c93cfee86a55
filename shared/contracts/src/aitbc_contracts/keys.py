"""What an account and a key are: the one fold of the key events, and the status rules.

Every reader of the key event log takes its meaning from here: the keys service's domain and
its read models, the edge's auth cache, the usage service's plan book and the CLI's audit
view. Each keeps only what it needs, but none of them decides on its own what an event does
to a key. `evolve` never refuses an event (events are facts); one that does not apply to the
state it is given (a revocation of a key never created) leaves that state as it was.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from aitbc_contracts.events import (
    AccountCreated,
    AnyEvent,
    KeyCreated,
    KeyKind,
    KeyRegenerated,
    KeyRestricted,
    KeyRevoked,
    MasterKeyDataPlaneChanged,
    Plan,
    PlanChanged,
    decode_event,
)
from aitbc_contracts.subjects import POSITION_HEADER

KeyStatus = Literal["active", "revoked", "expired"]


@dataclass(frozen=True, slots=True)
class AccountState:
    account_id: str
    name: str
    plan: Plan
    created_at: datetime
    version: int
    master_key_data_plane: bool = True  # False: its master key manages keys, and calls nothing


@dataclass(frozen=True, slots=True)
class KeyState:
    """A key after its events, with who acted (the audit view needs it; it costs little)."""

    key_id: str
    account_id: str
    name: str
    kind: KeyKind
    secret_hash: str
    hint: str
    created_at: datetime
    version: int
    expires_at: datetime | None = None
    rate_limit: int | None = None
    created_by: str = ""
    revoked_at: datetime | None = None
    revoked_by: str = ""
    reason: str = ""
    regenerated_at: datetime | None = None
    regenerated_by: str = ""
    regenerations: int = 0
    previous_hash: str | None = None  # the secret replaced last
    previous_valid_until: datetime | None = None  # its grace end; None: it ended at once
    scopes: tuple[str, ...] = ()  # its restrictions (KeyRestricted); none by default
    allowed_ips: tuple[str, ...] = ()
    shadow: bool = False

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def status(self, now: datetime) -> KeyStatus:
        """Revoked wins over expired: a revocation is a person's decision, expiry is time's."""
        if self.revoked_at is not None:
            return "revoked"
        if expired(self.expires_at, now):
            return "expired"
        return "active"

    def in_grace(self, now: datetime) -> bool:
        """Whether the secret replaced last still opens the key."""
        return self.previous_hash is not None and secret_valid(self.previous_valid_until, now)

    def data_plane(self, account: AccountState) -> bool:
        """Whether this key may call the forwarded /v1/... routes, as far as its account says:
        a standard key always, a master key unless the account keeps it to managing keys."""
        return self.kind != "master" or account.master_key_data_plane

    def secret_valid_until(self, secret_hash: str, now: datetime) -> datetime | bool | None:
        """For a secret of this key: None if it is the current one (valid until replaced), its
        grace end if it is the one replaced last and still in grace, False otherwise."""
        if secret_hash == self.secret_hash:
            return None
        if secret_hash == self.previous_hash and self.in_grace(now):
            return self.previous_valid_until
        return False


State = AccountState | KeyState


def expired(expires_at: datetime | None, now: datetime) -> bool:
    """The one expiry rule: a key (or a secret's grace) ends at its instant, not after it."""
    return expires_at is not None and expires_at <= now


def secret_valid(valid_until: datetime | None, now: datetime) -> bool:
    """A replaced secret in its grace period: valid strictly before its end."""
    return valid_until is not None and not expired(valid_until, now)


def evolve(state: State | None, event: AnyEvent) -> State | None:
    """The state of one stream (an account or a key) after one of its events."""
    match event:
        case AccountCreated():
            return AccountState(
                event.account_id, event.name, event.plan, event.occurred_at, event.version
            )
        case PlanChanged() if isinstance(state, AccountState):
            return dataclasses.replace(state, plan=event.plan, version=event.version)
        case MasterKeyDataPlaneChanged() if isinstance(state, AccountState):
            return dataclasses.replace(
                state, master_key_data_plane=event.data_plane, version=event.version
            )
        case KeyCreated():
            return KeyState(
                key_id=event.key_id,
                account_id=event.account_id,
                name=event.name,
                kind=event.kind,
                secret_hash=event.secret_hash,
                hint=event.hint,
                created_at=event.occurred_at,
                version=event.version,
                expires_at=event.expires_at,
                rate_limit=event.rate_limit,
                created_by=event.actor,
            )
        case KeyRestricted() if isinstance(state, KeyState):
            return dataclasses.replace(
                state,
                scopes=event.scopes,
                allowed_ips=event.allowed_ips,
                shadow=event.shadow,
                version=event.version,
            )
        case KeyRevoked() if isinstance(state, KeyState):
            return dataclasses.replace(
                state,
                revoked_at=event.occurred_at,
                revoked_by=event.actor,
                reason=event.reason,
                version=event.version,
            )
        case KeyRegenerated() if isinstance(state, KeyState):
            return dataclasses.replace(
                state,
                secret_hash=event.secret_hash,
                hint=event.hint,
                regenerated_at=event.occurred_at,
                regenerated_by=event.actor,
                regenerations=state.regenerations + 1,
                previous_hash=event.previous_hash,
                previous_valid_until=event.previous_valid_until,
                version=event.version,
            )
    return state


def fold(events: Iterable[AnyEvent]) -> State | None:
    """One stream's state from its events, oldest first."""
    state: State | None = None
    for event in events:
        state = evolve(state, event)
    return state


class KeyEventView(Protocol):
    """A reader of the key event log that keeps its own view of it (a cache, an index, a plan
    book, a read model). `process` is given each event once, in log order, with its position in
    the store's global order; `reset` says events may have passed unseen (a reconnect the
    reader could not resume from)."""

    def process(self, event: AnyEvent, position: int) -> None: ...

    def reset(self) -> None: ...


class InvalidKeyEvent(ValueError):
    """A message on the key event subjects that is not an event of the log as published."""


def read_envelope(data: bytes, headers: Mapping[str, str] | None) -> tuple[AnyEvent, int]:
    """The event of one key event stream message and its position in the store's order: the
    one decoder every reader of the stream uses (through aitbc_contracts.live_chain). Raises
    InvalidKeyEvent for anything else, saying what is wrong but quoting nothing of the message
    (it is anyone's, and may carry a secret)."""
    claimed = (headers or {}).get(POSITION_HEADER)
    if claimed is None:
        raise InvalidKeyEvent(f"no {POSITION_HEADER} header")
    try:
        position = int(claimed)
    except ValueError:
        raise InvalidKeyEvent(f"its {POSITION_HEADER} header is not a number") from None
    if position < 1:
        raise InvalidKeyEvent(f"its {POSITION_HEADER} header is {position}, not a position")
    try:
        event = decode_event(data)
    except ValueError as exc:  # msgspec's DecodeError is a ValueError
        raise InvalidKeyEvent(f"not a key event: {_unquoted(str(exc))}") from None
    return event, position


def _unquoted(reason: str) -> str:
    """A decoder's reason without the values it quotes (`Invalid value 'x' - at $.type`)."""
    return re.sub(r"'[^']*'", "'...'", reason)
