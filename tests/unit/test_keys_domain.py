"""The keys domain as histories: given these events, this command decides those events or fails."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from aitbc_contracts.events import (
    AccountCreated,
    AnyEvent,
    KeyCreated,
    KeyRegenerated,
    KeyRevoked,
    PlanChanged,
)
from aitbc_contracts.keys import AccountState, KeyState, fold
from aitbc_contracts.messages import (
    OPERATOR,
    Code,
    CreateAccount,
    CreateKey,
    RegenerateKey,
    RevokeKey,
    SetPlan,
)
from aitbc_keys.domain import (
    Forbidden,
    KeyRevokedError,
    NotFound,
    ValidationError,
    create_account,
    create_key,
    key_view,
    regenerate_key,
    revoke_key,
    set_plan,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64
OWNER = "key_master"
_ids = itertools.count(1)


def new_id() -> str:
    return f"evt_{next(_ids)}"


def account_created(account: str = "acc_1", plan: str = "free") -> AccountCreated:
    return AccountCreated(
        event_id=new_id(),
        stream_id=account,
        version=1,
        account_id=account,
        occurred_at=T0,
        name="Ada",
        plan=plan,
    )  # type: ignore[arg-type]


def key_created(
    key: str = "k1", account: str = "acc_1", kind: str = "standard", secret: str = H1
) -> KeyCreated:
    return KeyCreated(
        event_id=new_id(),
        stream_id=key,
        version=1,
        account_id=account,
        occurred_at=T0,
        key_id=key,
        name=key,
        kind=kind,  # type: ignore[arg-type]
        secret_hash=secret,
        hint="aitbc_1111",
    )


def revoked(key: str = "k1", version: int = 2, account: str = "acc_1") -> KeyRevoked:
    return KeyRevoked(
        event_id=new_id(),
        stream_id=key,
        version=version,
        account_id=account,
        occurred_at=T0 + timedelta(minutes=1),
        key_id=key,
    )


def revoke(key: str = "k1", account: str | None = "acc_1", actor: str = OWNER) -> RevokeKey:
    return RevokeKey(key_id=key, account_id=account, actor=actor, request_id="req-1")


def regenerate(
    key: str = "k1", account: str | None = "acc_1", grace: int = 0, secret: str = H2
) -> RegenerateKey:
    return RegenerateKey(
        key_id=key,
        account_id=account,
        secret_hash=secret,
        hint="aitbc_2222",
        grace_seconds=grace,
        actor=OWNER,
    )


# --- accounts ------------------------------------------------------------------------------


def test_creating_an_account_creates_it_and_its_master_key() -> None:
    command = CreateAccount(
        master_key_hash=H1,
        master_key_hint="aitbc_1111",
        name=" Ada ",
        plan="pro",
        request_id="req-9",
    )
    new = create_account(command, T0, "acc_1", "key_m", new_id)
    account, master = new
    assert isinstance(account, AccountCreated) and isinstance(master, KeyCreated)
    assert (account.stream_id, account.version, account.name, account.plan) == (
        "acc_1",
        1,
        "Ada",
        "pro",
    )
    assert (master.stream_id, master.version, master.kind, master.account_id) == (
        "key_m",
        1,
        "master",
        "acc_1",
    )
    assert master.secret_hash == H1
    assert {e.occurred_at for e in new} == {T0}
    assert {(e.actor, e.request_id) for e in new} == {(OPERATOR, "req-9")}
    assert account.event_id != master.event_id
    state = fold([master])
    assert isinstance(state, KeyState) and state.status(T0) == "active"


def test_an_account_needs_a_known_plan() -> None:
    command = CreateAccount(master_key_hash=H1, master_key_hint="aitbc_1111", plan="platinum")  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as err:
        create_account(command, T0, "acc_1", "key_m", new_id)
    assert err.value.code == Code.VALIDATION_ERROR


def test_changing_the_plan_records_the_previous_one() -> None:
    history: list[AnyEvent] = [account_created(plan="free")]
    [changed] = set_plan(fold(history), SetPlan(account_id="acc_1", plan="enterprise"), T0, new_id)
    assert isinstance(changed, PlanChanged)
    assert (changed.plan, changed.previous_plan, changed.version) == ("enterprise", "free", 2)
    state = fold([*history, changed])
    assert isinstance(state, AccountState) and state.plan == "enterprise"


def test_setting_the_same_plan_changes_nothing() -> None:
    assert (
        set_plan(
            fold([account_created(plan="pro")]), SetPlan(account_id="acc_1", plan="pro"), T0, new_id
        )
        == []
    )


def test_the_plan_of_a_missing_account_cannot_be_set() -> None:
    with pytest.raises(NotFound):
        set_plan(None, SetPlan(account_id="acc_x", plan="pro"), T0, new_id)


# --- creating keys -------------------------------------------------------------------------


def _create(**overrides: object) -> CreateKey:
    fields: dict[str, object] = {
        "account_id": "acc_1",
        "name": "  ci  ",
        "secret_hash": H2,
        "hint": "aitbc_2222",
        "actor": OWNER,
    }
    fields.update(overrides)
    return CreateKey(**fields)  # type: ignore[arg-type]


def test_a_standard_key_is_created_for_an_existing_account() -> None:
    expires = T0 + timedelta(days=30)
    [created] = create_key(
        fold([account_created()]), _create(expires_at=expires, rate_limit=10), T0, "k2", new_id
    )
    assert isinstance(created, KeyCreated)
    assert (created.key_id, created.kind, created.name, created.account_id) == (
        "k2",
        "standard",
        "ci",
        "acc_1",
    )
    assert (created.expires_at, created.rate_limit, created.actor) == (expires, 10, OWNER)


def test_keys_cannot_be_created_for_a_missing_account() -> None:
    with pytest.raises(NotFound):
        create_key(None, _create(), T0, "k2", new_id)


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": "   "},
        {"name": "x" * 101},
        {"expires_at": T0},
        {"expires_at": T0 - timedelta(seconds=1)},
        {"expires_at": datetime(2030, 1, 1)},  # naive: which zone?
        {"rate_limit": 0},
        {"rate_limit": 1_000_001},
        {"secret_hash": "not-a-hash"},
    ],
)
def test_invalid_keys_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        create_key(fold([account_created()]), _create(**overrides), T0, "k2", new_id)


def test_a_hundred_character_name_and_the_limits_are_accepted() -> None:
    for rate_limit in (1, 1_000_000):
        [created] = create_key(
            fold([account_created()]),
            _create(name="x" * 100, rate_limit=rate_limit),
            T0,
            "k2",
            new_id,
        )
        assert isinstance(created, KeyCreated) and created.rate_limit == rate_limit


# --- revoking ------------------------------------------------------------------------------


def test_revoking_a_key() -> None:
    [event] = revoke_key(fold([key_created()]), revoke(), T0, new_id)
    assert isinstance(event, KeyRevoked)
    assert (event.key_id, event.version, event.actor, event.request_id) == ("k1", 2, OWNER, "req-1")
    state = fold([key_created(), event])
    assert isinstance(state, KeyState) and state.status(T0) == "revoked"


def test_revoking_twice_is_idempotent() -> None:
    assert revoke_key(fold([key_created(), revoked()]), revoke(), T0, new_id) == []


def test_another_accounts_key_is_not_found() -> None:
    with pytest.raises(NotFound) as err:
        revoke_key(fold([key_created(account="acc_2")]), revoke(account="acc_1"), T0, new_id)
    assert err.value.code == Code.NOT_FOUND
    with pytest.raises(NotFound):
        regenerate_key(
            fold([key_created(account="acc_2")]), regenerate(account="acc_1"), T0, new_id
        )


def test_an_operator_may_revoke_any_accounts_key() -> None:
    [event] = revoke_key(
        fold([key_created(account="acc_2")]), revoke(account=None, actor=OPERATOR), T0, new_id
    )
    assert isinstance(event, KeyRevoked) and event.account_id == "acc_2"


def test_a_missing_key_is_not_found() -> None:
    with pytest.raises(NotFound):
        revoke_key(None, revoke(), T0, new_id)


def test_owners_cannot_revoke_their_master_key() -> None:
    history = [key_created(key="km", kind="master")]
    with pytest.raises(Forbidden) as err:
        revoke_key(fold(history), revoke(key="km"), T0, new_id)
    assert err.value.code == Code.FORBIDDEN


def test_an_operator_can_revoke_a_master_key() -> None:
    history = [key_created(key="km", kind="master")]
    [event] = revoke_key(fold(history), revoke(key="km", actor=OPERATOR), T0, new_id)
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


@pytest.mark.parametrize("grace", [-1, 7 * 24 * 3600 + 1])
def test_grace_is_at_most_a_week(grace: int) -> None:
    with pytest.raises(ValidationError):
        regenerate_key(fold([key_created()]), regenerate(grace=grace), T0, new_id)


def test_a_week_of_grace_is_allowed() -> None:
    [event] = regenerate_key(fold([key_created()]), regenerate(grace=7 * 24 * 3600), T0, new_id)
    assert isinstance(event, KeyRegenerated)
    assert event.previous_valid_until == T0 + timedelta(days=7)


def test_an_expired_key_reports_expired() -> None:
    created: list[AnyEvent] = create_key(
        fold([account_created()]), _create(expires_at=T0 + timedelta(minutes=5)), T0, "k2", new_id
    )
    state = fold(created)
    assert isinstance(state, KeyState)
    assert state.status(T0) == "active"
    assert state.status(T0 + timedelta(minutes=5)) == "expired"
    assert key_view(state, T0 + timedelta(minutes=5)).status == "expired"  # the fold's rule
