"""Keys that can do less: restricting a key (scopes, IP allow-list, shadow mode) and what a
root key, a standard key with `keys:manage`, may do to the account's keys. Pure: no I/O.

Restrictions are a standard key's: a master key is its account's way in (and the only key that
changes the account's settings), so it is never restricted (VALIDATION_ERROR). A root key is
judged by its own state, which the service loads from its stream (the command only names it, as
its `actor`): it manages keys only with `keys:manage`; it gives no key a scope it lacks (nor
none, which means every scope), no network outside its own allow-list, no shadow mode it is not
in itself, and no life past its own end; it acts only on standard keys whose scopes are all its
own, and takes the new secret only of one that reaches no further than itself; it never touches
the account's settings. The master key, an operator, and a command that names no key keep their
powers.
"""

from __future__ import annotations

from datetime import datetime

from aitbc_contracts import restrictions
from aitbc_contracts.events import AnyEvent, KeyRestricted
from aitbc_contracts.keys import KeyState, State
from aitbc_contracts.messages import CreateKey, RestrictKey
from aitbc_keys.domain.rules import (
    Forbidden,
    IdFactory,
    KeyRevokedError,
    ValidationError,
    envelope,
    following,
    visible_key,
)

Restrictions = tuple[tuple[str, ...], tuple[str, ...], bool]  # scopes, allowed_ips, shadow


def checked(scopes: tuple[str, ...], allowed_ips: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Scopes and allow-list as they are kept (aitbc_contracts.restrictions), or why not."""
    try:
        return restrictions.scopes(scopes), restrictions.allowed_ips(allowed_ips)
    except restrictions.InvalidRestriction as exc:
        raise ValidationError(str(exc)) from None


# --- root keys ----------------------------------------------------------------------------


def managing_key(actor: KeyState | None) -> KeyState | None:
    """`actor`: the acting key's state when it is a standard key of the account (the handlers
    load it), else None (the master key, an operator: today's powers). A standard key manages
    keys only with `keys:manage`; returned, it is the root key the other rules judge by."""
    if actor is None:
        return None
    if actor.revoked:
        raise Forbidden(f"key {actor.key_id} is revoked: it manages nothing")
    if restrictions.KEYS_MANAGE not in actor.scopes:
        raise Forbidden(
            f"managing keys requires the account's master key or a key with the "
            f"{restrictions.KEYS_MANAGE} scope"
        )
    return actor


def owning_key(actor: KeyState | None) -> None:
    """The account's settings are its master key's (an operator's): never a root key's."""
    if actor is not None:
        raise Forbidden("only the account's master key changes the account's settings")


def may_give(root: KeyState | None, given: Restrictions) -> None:
    """A root key gives only restrictions at least as narrow as its own."""
    if root is None:
        return
    scopes, allowed_ips, shadow = given
    if not scopes:
        raise Forbidden(
            "a key made or changed by a root key needs scopes (none means every scope), "
            f"among its own: {', '.join(root.scopes)}"
        )
    wider = sorted(set(scopes) - set(root.scopes))
    if wider:
        raise Forbidden(
            f"a root key cannot give scopes it does not hold: {', '.join(wider)} "
            f"(it holds {', '.join(root.scopes)})"
        )
    if not restrictions.within(allowed_ips, root.allowed_ips):
        raise Forbidden("a root key cannot allow networks outside its own allow-list")
    if shadow and not root.shadow:
        raise Forbidden("a root key cannot put a key in shadow mode it is not in itself")


def may_last(root: KeyState | None, expires_at: datetime | None) -> None:
    """A root key that expires makes no key that outlives it."""
    if root is not None and root.expires_at is not None and _outlives(expires_at, root):
        raise Forbidden(
            f"a root key that expires makes keys that expire too, by its own end "
            f"({root.expires_at.isoformat()})"
        )


def _outlives(expires_at: datetime | None, root: KeyState) -> bool:
    """Whether a key ending at `expires_at` (None: never) would outlive the root key."""
    return root.expires_at is not None and (expires_at is None or expires_at > root.expires_at)


def may_act_on(root: KeyState | None, key: KeyState) -> None:
    """A root key acts only on standard keys all of whose scopes it holds (itself included:
    it can narrow itself, never widen)."""
    if root is None:
        return
    if key.kind == "master":
        raise Forbidden("a root key cannot act on the account's master key")
    if not key.scopes or not restrictions.subset(key.scopes, root.scopes):
        raise Forbidden(
            f"key {key.key_id} holds scopes this root key does not "
            f"({', '.join(key.scopes) or 'every scope'}): only a wider key may change it"
        )


def may_hold(root: KeyState | None, key: KeyState) -> None:
    """A root key that regenerates a key holds its new secret: the key must reach no further
    than the root key itself, in networks, in time and in shadow mode (its scopes are checked
    by may_act_on)."""
    if root is None:
        return
    wider = (
        not restrictions.within(key.allowed_ips, root.allowed_ips)
        or _outlives(key.expires_at, root)
        or (key.shadow and not root.shadow)
    )
    if wider:
        raise Forbidden(
            f"key {key.key_id} reaches further than this root key (its allow-list, its end or "
            "its shadow mode): only a wider key may regenerate it"
        )


# --- decisions ----------------------------------------------------------------------------


def created_restricted(
    command: CreateKey,
    kept: Restrictions,
    now: datetime,
    event_id: str,
    key_id: str,
    account_id: str,
) -> list[AnyEvent]:
    """The KeyRestricted that follows a new key's KeyCreated (version 2) when it is created
    with restrictions (`kept`: the command's, as `given` keeps them); none when it is not."""
    scopes, allowed_ips, shadow = kept
    if not (scopes or allowed_ips or shadow):
        return []
    return [
        KeyRestricted(
            **envelope(command, now, event_id, key_id, 2, account_id),
            key_id=key_id,
            scopes=scopes,
            allowed_ips=allowed_ips,
            shadow=shadow,
        )
    ]


def restrict_key(
    state: State | None,
    command: RestrictKey,
    now: datetime,
    new_id: IdFactory,
    root: KeyState | None = None,
) -> list[AnyEvent]:
    """New restrictions for a standard key: each field the command leaves None stays as it is;
    nothing changed, nothing recorded. `root`: the acting root key (managing_key), if any."""
    key = visible_key(state, command.key_id, command.account_id)
    if key.revoked:
        raise KeyRevokedError(f"key {key.key_id} is revoked and cannot be restricted")
    if key.kind == "master":
        raise ValidationError(
            "a master key cannot be restricted: scopes, allowed_ips and shadow are a "
            "standard key's (create one for what the master key should not do)"
        )
    may_act_on(root, key)
    scopes, allowed_ips = checked(
        key.scopes if command.scopes is None else command.scopes,
        key.allowed_ips if command.allowed_ips is None else command.allowed_ips,
    )
    shadow = key.shadow if command.shadow is None else command.shadow
    if (scopes, allowed_ips, shadow) == (key.scopes, key.allowed_ips, key.shadow):
        return []
    may_give(root, (scopes, allowed_ips, shadow))
    return [
        KeyRestricted(
            **following(key, command, now, new_id),
            key_id=key.key_id,
            scopes=scopes,
            allowed_ips=allowed_ips,
            shadow=shadow,
        )
    ]


def given(command: CreateKey) -> Restrictions:
    """A new key's restrictions, as they are kept, or why not (ValidationError)."""
    scopes, allowed_ips = checked(command.scopes, command.allowed_ips)
    return scopes, allowed_ips, command.shadow
