"""The keys domain as histories, accounts and new keys: given these events, this command decides
those events or fails (revoking and regenerating: test_keys_domain_changes.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aitbc_contracts.events import (
    AccountCreated,
    AnyEvent,
    KeyCreated,
    KeyRevoked,
    MasterKeyDataPlaneChanged,
    PlanChanged,
)
from aitbc_contracts.keys import AccountState, KeyState, fold
from aitbc_contracts.messages import (
    OPERATOR,
    Code,
    CreateAccount,
    ReplaceMasterKey,
    SetMasterKeyDataPlane,
    SetPlan,
)
from aitbc_keys.domain import (
    NotFound,
    TooManyKeys,
    ValidationError,
    create_account,
    create_key,
    key_view,
    replace_master_key,
    set_master_key_data_plane,
    set_plan,
)
from tests.unit.keys_domain_events import (
    H1,
    H2,
    H3,
    OWNER,
    T0,
    account_created,
    create_command,
    key_created,
    new_id,
    revoked,
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


def test_a_standard_key_is_created_for_an_existing_account() -> None:
    expires = T0 + timedelta(days=30)
    [created] = create_key(
        fold([account_created()]),
        create_command(expires_at=expires, rate_limit=10),
        T0,
        "k2",
        new_id,
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
        create_key(None, create_command(), T0, "k2", new_id)


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": "   "},
        {"name": "x" * 101},
        {"expires_at": T0},
        {"expires_at": T0 - timedelta(seconds=1)},
        {"expires_at": datetime(2030, 1, 1)},  # naive: which zone?
        # no instant in UTC that datetime holds: past its last one, before its first
        {"expires_at": datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5)))},
        {"expires_at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))},
        {"rate_limit": 0},
        {"rate_limit": 1_000_001},
        {"secret_hash": "not-a-hash"},
    ],
)
def test_invalid_keys_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        create_key(fold([account_created()]), create_command(**overrides), T0, "k2", new_id)


def test_a_hundred_character_name_and_the_limits_are_accepted() -> None:
    for rate_limit in (1, 1_000_000):
        [created] = create_key(
            fold([account_created()]),
            create_command(name="x" * 100, rate_limit=rate_limit),
            T0,
            "k2",
            new_id,
        )
        assert isinstance(created, KeyCreated) and created.rate_limit == rate_limit


def test_an_expired_key_reports_expired() -> None:
    created: list[AnyEvent] = create_key(
        fold([account_created()]),
        create_command(expires_at=T0 + timedelta(minutes=5)),
        T0,
        "k2",
        new_id,
    )
    state = fold(created)
    assert isinstance(state, KeyState)
    assert state.status(T0) == "active"
    assert state.status(T0 + timedelta(minutes=5)) == "expired"
    assert key_view(state, T0 + timedelta(minutes=5)).status == "expired"  # the fold's rule


# --- names people read, and how many keys an account holds -----------------------------------

HOSTILE = ["evil\u202etxt.exe", "a\x1b[2Jb", "line\nbreak", "zero\u200bwidth", "nul\x00", "\u2066x"]


@pytest.mark.parametrize("name", HOSTILE)
def test_key_names_with_control_or_format_characters_are_refused(name: str) -> None:
    with pytest.raises(ValidationError) as err:
        create_key(fold([account_created()]), create_command(name=name), T0, "k2", new_id)
    assert err.value.code == Code.VALIDATION_ERROR and "U+" in err.value.message


@pytest.mark.parametrize("name", HOSTILE)
def test_account_names_with_control_or_format_characters_are_refused(name: str) -> None:
    command = CreateAccount(master_key_hash=H1, master_key_hint="aitbc_1111", name=name)
    with pytest.raises(ValidationError) as err:
        create_account(command, T0, "acc_1", "key_m", new_id)
    assert "control or format characters" in err.value.message


def test_names_in_any_script_are_accepted() -> None:
    for name in ["Zoë's CI", "ключ", "鍵 1", "مفتاح", "🔑 deploy"]:
        [created] = create_key(
            fold([account_created()]), create_command(name=name), T0, "k2", new_id
        )
        assert isinstance(created, KeyCreated) and created.name == name


def test_a_hint_with_control_characters_is_refused() -> None:
    with pytest.raises(ValidationError):
        create_key(fold([account_created()]), create_command(hint="aitbc\x1b"), T0, "k2", new_id)


def test_an_account_at_its_cap_of_live_keys_makes_no_more() -> None:
    account = fold([account_created()])
    [created] = create_key(account, create_command(), T0, "k2", new_id, live_keys=2, max_keys=3)
    assert isinstance(created, KeyCreated)
    with pytest.raises(TooManyKeys) as err:
        create_key(account, create_command(), T0, "k3", new_id, live_keys=3, max_keys=3)
    assert err.value.code == Code.TOO_MANY_KEYS and "3" in err.value.message


# --- account recovery: a new master key -------------------------------------------------------


def test_a_new_master_key_revokes_the_live_master_keys_and_says_which_replaced_them() -> None:
    history: list[AnyEvent] = [account_created(), key_created("m1", kind="master")]
    history += [key_created("k1", secret=H2)]
    keys = [fold([e]) for e in history[1:]]
    command = ReplaceMasterKey(account_id="acc_1", secret_hash=H3, hint="aitbc_3333", reason="lost")
    revoked, created = replace_master_key(fold(history[:1]), keys, command, T0, "m2", new_id)  # type: ignore[arg-type]
    assert isinstance(revoked, KeyRevoked) and isinstance(created, KeyCreated)
    assert (revoked.key_id, revoked.version, revoked.actor) == ("m1", 2, OPERATOR)
    assert revoked.reason == "replaced by the new master key m2: lost"
    assert (created.key_id, created.kind, created.secret_hash, created.version) == (
        "m2",
        "master",
        H3,
        1,
    )
    assert (created.account_id, created.actor) == ("acc_1", OPERATOR)


def test_a_revoked_master_key_is_replaced_without_a_second_revocation() -> None:
    master = fold([key_created("m1", kind="master"), revoked("m1")])
    command = ReplaceMasterKey(account_id="acc_1", secret_hash=H3, hint="aitbc_3333")
    [created] = replace_master_key(fold([account_created()]), [master], command, T0, "m2", new_id)  # type: ignore[list-item]
    assert isinstance(created, KeyCreated) and created.kind == "master"


def test_a_missing_account_gets_no_master_key() -> None:
    command = ReplaceMasterKey(account_id="acc_x", secret_hash=H3, hint="aitbc_3333")
    with pytest.raises(NotFound):
        replace_master_key(None, [], command, T0, "m2", new_id)


# --- the master key on the data plane ---------------------------------------------------------


def test_an_owner_keeps_the_master_key_to_managing_keys_and_lets_it_out_again() -> None:
    history: list[AnyEvent] = [account_created()]
    off = SetMasterKeyDataPlane(account_id="acc_1", data_plane=False, actor=OWNER)
    [changed] = set_master_key_data_plane(fold(history), off, T0, new_id)
    assert isinstance(changed, MasterKeyDataPlaneChanged)
    assert (changed.data_plane, changed.version, changed.actor) == (False, 2, OWNER)
    history.append(changed)
    account = fold(history)
    assert isinstance(account, AccountState) and not account.master_key_data_plane
    master, standard = fold([key_created("m", kind="master")]), fold([key_created("k")])
    assert isinstance(master, KeyState) and isinstance(standard, KeyState)
    assert (master.data_plane(account), standard.data_plane(account)) == (False, True)
    assert set_master_key_data_plane(account, off, T0, new_id) == []  # as it is
    on = SetMasterKeyDataPlane(account_id="acc_1", data_plane=True, actor=OWNER)
    [back] = set_master_key_data_plane(account, on, T0, new_id)
    assert isinstance(back, MasterKeyDataPlaneChanged) and back.version == 3
    with pytest.raises(NotFound):
        set_master_key_data_plane(None, on, T0, new_id)
