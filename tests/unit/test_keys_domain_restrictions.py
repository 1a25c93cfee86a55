"""The keys domain as histories, restricting keys and managing them with a root key (a standard
key with keys:manage): it gives and changes only what is at most as wide as its own."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from aitbc_contracts.events import AnyEvent, KeyCreated, KeyRestricted
from aitbc_contracts.keys import KeyState, fold
from aitbc_contracts.messages import RestrictKey
from aitbc_contracts.powers import Power
from aitbc_keys.domain import (
    Forbidden,
    KeyRevokedError,
    ValidationError,
    create_key,
    managing_key,
    owning_key,
    regenerate_key,
    restrict_key,
    revoke_key,
)
from tests.unit.keys_domain_events import (
    OWNER,
    T0,
    account_created,
    create_command,
    envelope,
    key_created,
    new_id,
    regenerate,
    revoke,
    revoked,
)


def restricted(
    key: str = "k1",
    version: int = 2,
    scopes: tuple[str, ...] = (),
    allowed_ips: tuple[str, ...] = (),
    shadow: bool = False,
) -> KeyRestricted:
    return KeyRestricted(
        **envelope(key, version, "acc_1", T0 + timedelta(minutes=1)),
        key_id=key,
        scopes=scopes,
        allowed_ips=allowed_ips,
        shadow=shadow,
    )


def key(key_id: str = "k1", *history: AnyEvent, kind: str = "standard") -> KeyState:
    state = fold([key_created(key_id, kind=kind), *history])
    assert isinstance(state, KeyState)
    return state


def root(*scopes: str, allowed_ips: tuple[str, ...] = ()) -> KeyState:
    """A root key, as the service loads it: its own stream's state."""
    return key("root", restricted("root", scopes=scopes, allowed_ips=allowed_ips))


def restrict(key_id: str = "k1", actor: str = OWNER, **fields: object) -> RestrictKey:
    return RestrictKey(account_id="acc_1", key_id=key_id, actor=actor, **fields)  # type: ignore[arg-type]


# --- restricting ---------------------------------------------------------------------------


def test_a_key_created_restricted_has_its_restrictions_right_after_its_creation() -> None:
    command = create_command(
        scopes=("jobs:read", "jobs:read"), allowed_ips=("203.0.113.7",), shadow=True
    )
    created, limited = create_key(fold([account_created()]), command, T0, "k2", new_id)
    assert isinstance(created, KeyCreated) and isinstance(limited, KeyRestricted)
    assert (limited.stream_id, limited.version, limited.occurred_at) == ("k2", 2, T0)
    state = fold([created, limited])
    assert isinstance(state, KeyState)
    assert (state.scopes, state.allowed_ips, state.shadow) == (
        ("jobs:read",),
        ("203.0.113.7/32",),
        True,
    )


def test_a_key_created_without_restrictions_has_its_creation_only() -> None:
    assert len(create_key(fold([account_created()]), create_command(), T0, "k2", new_id)) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scopes": ("Jobs:Read",)}, "resource:action"),
        ({"allowed_ips": ("10.0.0.0/33",)}, "not an IP address"),
    ],
)
def test_invalid_restrictions_are_refused_clearly(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        create_key(fold([account_created()]), create_command(**fields), T0, "k2", new_id)
    with pytest.raises(ValidationError, match=message):
        restrict_key(key(), restrict(**fields), T0, new_id)


def test_restricting_changes_what_is_named_and_keeps_the_rest() -> None:
    state = key("k1", restricted(scopes=("jobs:read",), allowed_ips=("10.0.0.0/8",)))
    [event] = restrict_key(state, restrict(shadow=True), T0, new_id)
    assert isinstance(event, KeyRestricted) and event.version == 3
    assert (event.scopes, event.allowed_ips, event.shadow) == (
        ("jobs:read",),
        ("10.0.0.0/8",),
        True,
    )
    [event] = restrict_key(state, restrict(scopes=()), T0, new_id)
    assert event.scopes == () and event.allowed_ips == ("10.0.0.0/8",)  # no scopes: everything


def test_restricting_to_what_a_key_has_records_nothing() -> None:
    state = key("k1", restricted(scopes=("jobs:read",)))
    assert restrict_key(state, restrict(scopes=("jobs:read",)), T0, new_id) == []
    assert restrict_key(state, restrict(), T0, new_id) == []


def test_a_master_key_cannot_be_restricted() -> None:
    with pytest.raises(ValidationError, match="master key cannot be restricted"):
        restrict_key(key("m", kind="master"), restrict("m", scopes=("jobs:read",)), T0, new_id)


def test_a_revoked_key_cannot_be_restricted() -> None:
    with pytest.raises(KeyRevokedError):
        restrict_key(key("k1", revoked()), restrict(scopes=("jobs:read",)), T0, new_id)


# --- root keys ---------------------------------------------------------------------------


def test_a_standard_key_manages_keys_only_with_keys_manage() -> None:
    with pytest.raises(Forbidden, match="keys:manage"):
        managing_key(key("plain"))  # no scopes: everything on the data plane, no managing
    with pytest.raises(Forbidden, match="keys:manage"):
        managing_key(root("jobs:read"))
    assert managing_key(root("keys:manage")) is not None
    assert managing_key(None) is None  # the master key, an operator


def test_a_root_key_never_changes_the_accounts_settings() -> None:
    with pytest.raises(Forbidden, match="master key"):
        owning_key(root("keys:manage", "jobs:read"))
    owning_key(None)


def test_a_root_key_creates_keys_with_some_of_its_own_scopes_only() -> None:
    boss = root("keys:manage", "jobs:read", "jobs:write")
    account = fold([account_created()])
    made = create_key(account, create_command(scopes=("jobs:read",)), T0, "k2", new_id, root=boss)
    assert made[-1].scopes == ("jobs:read",)  # type: ignore[union-attr]
    with pytest.raises(Forbidden, match="usage:read"):
        create_key(account, create_command(scopes=("usage:read",)), T0, "k2", new_id, root=boss)
    with pytest.raises(Forbidden, match="needs scopes"):
        create_key(account, create_command(), T0, "k2", new_id, root=boss)


def test_a_root_key_with_an_allow_list_gives_none_wider() -> None:
    boss = root("keys:manage", "jobs:read", allowed_ips=("10.0.0.0/8",))
    account = fold([account_created()])
    narrower = create_command(scopes=("jobs:read",), allowed_ips=("10.1.0.0/16",))
    assert len(create_key(account, narrower, T0, "k2", new_id, root=boss)) == 2
    for ips in [(), ("0.0.0.0/0",)]:
        wider = create_command(scopes=("jobs:read",), allowed_ips=ips)
        with pytest.raises(Forbidden, match="allow-list"):
            create_key(account, wider, T0, "k2", new_id, root=boss)


def test_a_root_key_puts_no_key_in_shadow_mode_it_is_not_in() -> None:
    boss = root("keys:manage", "jobs:read")
    shadowed = create_command(scopes=("jobs:read",), shadow=True)
    with pytest.raises(Forbidden, match="shadow"):
        create_key(fold([account_created()]), shadowed, T0, "k2", new_id, root=boss)


def test_a_root_key_acts_only_on_keys_within_its_scopes() -> None:
    boss = root("keys:manage", "jobs:read", "jobs:write")
    narrow = key("k1", restricted(scopes=("jobs:read",)))
    wide = key("k2", restricted("k2", scopes=("usage:read",)))
    unscoped = key("k3")
    master = key("m", kind="master")
    assert revoke_key(narrow, revoke(), T0, new_id, Power.OWNER, boss)
    assert regenerate_key(narrow, regenerate(), T0, new_id, boss)
    for other in (wide, unscoped):
        with pytest.raises(Forbidden, match="does not"):
            revoke_key(other, revoke(other.key_id), T0, new_id, Power.OWNER, boss)
        with pytest.raises(Forbidden, match="does not"):
            restrict_key(other, restrict(other.key_id, scopes=("jobs:read",)), T0, new_id, boss)
    with pytest.raises(Forbidden, match="master key"):
        revoke_key(master, revoke("m"), T0, new_id, Power.OWNER, boss)
    with pytest.raises(Forbidden, match="master key"):
        regenerate_key(master, regenerate("m"), T0, new_id, boss)


def test_a_root_key_narrows_keys_and_itself_but_never_widens() -> None:
    boss = root("keys:manage", "jobs:read", "jobs:write")
    narrow = key("k1", restricted(scopes=("jobs:read",)))
    [event] = restrict_key(narrow, restrict(scopes=("jobs:write",)), T0, new_id, boss)
    assert event.scopes == ("jobs:write",)  # type: ignore[attr-defined]
    with pytest.raises(Forbidden, match="usage:read"):
        restrict_key(narrow, restrict(scopes=("usage:read",)), T0, new_id, boss)
    with pytest.raises(Forbidden, match="needs scopes"):
        restrict_key(narrow, restrict(scopes=()), T0, new_id, boss)
    [event] = restrict_key(boss, restrict("root", scopes=("keys:manage",)), T0, new_id, boss)
    assert event.scopes == ("keys:manage",)  # type: ignore[attr-defined]


def test_a_root_key_that_expires_makes_no_key_that_outlives_it() -> None:
    ends = T0 + timedelta(days=1)
    boss = key("root", restricted("root", scopes=("keys:manage", "jobs:read")))
    boss = dataclasses.replace(boss, expires_at=ends)
    account = fold([account_created()])
    sooner = create_command(scopes=("jobs:read",), expires_at=T0 + timedelta(hours=1))
    assert len(create_key(account, sooner, T0, "k2", new_id, root=boss)) == 2
    for expires_at in (None, ends + timedelta(seconds=1)):
        later = create_command(scopes=("jobs:read",), expires_at=expires_at)
        with pytest.raises(Forbidden, match="expire"):
            create_key(account, later, T0, "k2", new_id, root=boss)


def test_a_root_key_takes_no_secret_of_a_key_that_reaches_further() -> None:
    boss = root("keys:manage", "jobs:read", allowed_ips=("10.0.0.0/8",))
    inside = key("k1", restricted(scopes=("jobs:read",), allowed_ips=("10.1.0.0/16",)))
    assert regenerate_key(inside, regenerate(), T0, new_id, boss)
    anywhere = key("k2", restricted("k2", scopes=("jobs:read",)))
    with pytest.raises(Forbidden, match="reaches further"):
        regenerate_key(anywhere, regenerate("k2"), T0, new_id, boss)
    mortal = dataclasses.replace(root("keys:manage", "jobs:read"), expires_at=T0)
    forever = key("k3", restricted("k3", scopes=("jobs:read",)))
    with pytest.raises(Forbidden, match="reaches further"):
        regenerate_key(forever, regenerate("k3"), T0, new_id, mortal)
    assert revoke_key(anywhere, revoke("k2"), T0, new_id, Power.OWNER, boss)  # it may end it
