"""The keys domain as histories, revoking and regenerating keys: given these events, this command
decides those events or fails (accounts and new keys: test_keys_domain.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aitbc_contracts.events import AnyEvent, KeyRegenerated, KeyRevoked
from aitbc_contracts.keys import KeyState, fold
from aitbc_contracts.messages import OPERATOR, Code
from aitbc_contracts.powers import Power
from aitbc_keys.domain import (
    Forbidden,
    KeyRevokedError,
    NotFound,
    ValidationError,
    regenerate_key,
    revoke_key,
    secrets_of,
)
from tests.unit.keys_domain_events import (
    H1,
    H2,
    H3,
    OWNER,
    T0,
    key_created,
    new_id,
    regenerate,
    revoke,
    revoked,
)

# --- revoking ------------------------------------------------------------------------------


def test_revoking_a_key() -> None:
    [event] = revoke_key(fold([key_created()]), revoke(), T0, new_id, Power.OWNER)
    assert isinstance(event, KeyRevoked)
    assert (event.key_id, event.version, event.actor, event.request_id) == ("k1", 2, OWNER, "req-1")
    state = fold([key_created(), event])
    assert isinstance(state, KeyState) and state.status(T0) == "revoked"


def test_revoking_twice_is_idempotent() -> None:
    assert revoke_key(fold([key_created(), revoked()]), revoke(), T0, new_id, Power.OWNER) == []


def test_another_accounts_key_is_not_found() -> None:
    with pytest.raises(NotFound) as err:
        revoke_key(
            fold([key_created(account="acc_2")]), revoke(account="acc_1"), T0, new_id, Power.OWNER
        )
    assert err.value.code == Code.NOT_FOUND
    with pytest.raises(NotFound):
        regenerate_key(
            fold([key_created(account="acc_2")]), regenerate(account="acc_1"), T0, new_id
        )


def test_an_operator_may_revoke_any_accounts_key() -> None:
    [event] = revoke_key(
        fold([key_created(account="acc_2")]),
        revoke(account=None, actor=OPERATOR),
        T0,
        new_id,
        Power.OPERATOR,
    )
    assert isinstance(event, KeyRevoked) and event.account_id == "acc_2"


def test_a_missing_key_is_not_found() -> None:
    with pytest.raises(NotFound):
        revoke_key(None, revoke(), T0, new_id, Power.OWNER)


def test_owners_cannot_revoke_their_master_key() -> None:
    history = [key_created(key="km", kind="master")]
    with pytest.raises(Forbidden) as err:
        revoke_key(fold(history), revoke(key="km"), T0, new_id, Power.OWNER)
    assert err.value.code == Code.FORBIDDEN


def test_an_operator_can_revoke_a_master_key() -> None:
    history = [key_created(key="km", kind="master")]
    [event] = revoke_key(
        fold(history), revoke(key="km", actor=OPERATOR), T0, new_id, Power.OPERATOR
    )
    assert isinstance(event, KeyRevoked)


# --- regenerating --------------------------------------------------------------------------


def test_a_revoked_key_cannot_be_regenerated() -> None:
    history: list[AnyEvent] = [key_created(), revoked()]
    with pytest.raises(KeyRevokedError) as err:
        regenerate_key(fold(history), regenerate(), T0, new_id)
    assert err.value.code == Code.CONFLICT
    assert "revoked" in err.value.message


def test_regenerating_without_grace_invalidates_the_old_secret_at_once() -> None:
    [event] = regenerate_key(fold([key_created()]), regenerate(grace=0), T0, new_id)
    assert isinstance(event, KeyRegenerated)
    assert (event.previous_hash, event.secret_hash, event.previous_valid_until) == (H1, H2, None)


def test_regenerating_with_grace_keeps_the_old_secret_until_the_grace_ends() -> None:
    [event] = regenerate_key(fold([key_created()]), regenerate(grace=3600), T0, new_id)
    assert isinstance(event, KeyRegenerated)
    assert event.previous_valid_until == T0 + timedelta(hours=1)
    state = fold([key_created(), event])
    assert isinstance(state, KeyState)
    assert (state.secret_hash, state.version, state.regenerated_at) == (H2, 2, T0)


def test_regenerating_twice_chains_the_secrets() -> None:
    first = regenerate_key(fold([key_created()]), regenerate(secret=H2), T0, new_id)
    [second] = regenerate_key(fold([key_created(), *first]), regenerate(secret=H3), T0, new_id)
    assert isinstance(second, KeyRegenerated)
    assert (second.previous_hash, second.version) == (H2, 3)


@pytest.mark.parametrize(("second_grace", "open_after"), [(0, {H3}), (600, {H2, H3})])
def test_a_regenerate_ends_every_older_secret_unless_it_grants_grace_to_the_one_it_replaces(
    second_grace: int, open_after: set[str]
) -> None:
    """A leak after a graceful regenerate: the second one ends the first secret's grace too."""
    history: list[AnyEvent] = [key_created()]
    history += regenerate_key(fold(history), regenerate(secret=H2, grace=3600), T0, new_id)
    later = T0 + timedelta(minutes=1)
    history += regenerate_key(
        fold(history), regenerate(secret=H3, grace=second_grace), later, new_id
    )
    key = fold(history)
    assert isinstance(key, KeyState)
    opens = {h for h in (H1, H2, H3) if key.secret_valid_until(h, later) is not False}
    assert opens == open_after
    assert set(secrets_of(key)) == open_after


@pytest.mark.parametrize("grace", [-1, 7 * 24 * 3600 + 1])
def test_grace_is_at_most_a_week(grace: int) -> None:
    with pytest.raises(ValidationError):
        regenerate_key(fold([key_created()]), regenerate(grace=grace), T0, new_id)


def test_a_week_of_grace_is_allowed() -> None:
    [event] = regenerate_key(fold([key_created()]), regenerate(grace=7 * 24 * 3600), T0, new_id)
    assert isinstance(event, KeyRegenerated)
    assert event.previous_valid_until == T0 + timedelta(days=7)
