"""The permission table (aitbc_infra.bus_roles): docs/security.md shows it row for row, and the
rules it must keep whatever is added to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aitbc_contracts import subjects as s
from aitbc_infra.bus_accounts import (
    api_prefix,
    covers,
    deliver_prefix,
    links,
    members,
    mirrors,
    read_streams,
)
from aitbc_infra.bus_config import user_entry
from aitbc_infra.bus_roles import ROLES, Role
from aitbc_infra.bus_stores import (
    ACCOUNTS,
    CHECKPOINTS_STREAM,
    DESTRUCTIVE,
    KEY_EVENTS_STREAM,
    KEYLOG_ACCOUNT,
    READ_ACCOUNT,
    STORES,
    USAGE_ACCOUNT,
    Store,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
USERS = [role for role in ROLES.values() if not role.admin]


def test_the_documents_table_is_the_table() -> None:
    rows = [line for line in DOC.read_text().splitlines() if re.match(r"\| `[a-z-]+` \|", line)]
    assert rows == [role.summary() for role in ROLES.values()]


def test_the_key_log_is_written_by_its_writer_alone() -> None:
    writers = [
        role.name
        for role in USERS
        if any(x.startswith((s.KEY_EVENTS_PREFIX, s.KEY_CHECKPOINTS_PREFIX)) for x in role.publish)
    ]
    assert writers == ["keys-writer"]
    in_keylog = [role.name for role in ROLES.values() if role.account == KEYLOG_ACCOUNT]
    assert in_keylog == ["keys-writer", "keylog-admin"]


@pytest.mark.parametrize("role", USERS, ids=lambda role: role.name)
def test_no_role_but_an_admin_removes_or_reshapes_a_stream(role: Role) -> None:
    forbidden = ("$JS.API.STREAM.DELETE", "$JS.API.STREAM.PURGE", "$JS.API.STREAM.MSG.DELETE")
    assert not [x for x in role.publish if x.startswith(forbidden)]
    updates = [x for x in role.publish if x.startswith("$JS.API.STREAM.UPDATE")]
    assert updates == [] or (role.account == KEYLOG_ACCOUNT and role.name == "keys-writer")
    entry = user_entry(role, "UKEY")
    assert all(f'"{x}"' in entry for x in DESTRUCTIVE)  # denied even past a wide allow


@pytest.mark.parametrize("role", USERS, ids=lambda role: role.name)
def test_a_role_subscribes_to_its_own_inbox_only(role: Role) -> None:
    entry = user_entry(role, "UABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert '"_INBOX.UABCDEFGHIJKLMNO.>"' in entry
    assert not [x for x in role.subscribe if x.startswith("_INBOX") or x in (">", "*")]


def writers(store: Store) -> set[str]:
    """The roles that may publish on the store's subjects, where they are."""
    return {
        role.name
        for role in USERS
        if any(covers(x, store.subjects) or covers(store.subjects, x) for x in role.publish)
    }


@pytest.mark.parametrize("store", STORES.values(), ids=lambda store: store.stream)
def test_a_store_lives_with_its_writers_and_nobody_else(store: Store) -> None:
    """Everyone in an account can have the server store anything on any subject there (a
    reply subject it names): so every user of a store's account is a role that writes it.
    A writer of another account writes through a service import, which the next test allows
    only into an account whose every user writes the store (the edges into the usage stream)."""
    assert writers(store), f"nobody writes {store.stream}"
    users = {role.name for role in members(store.account) if not role.admin}
    assert users and users <= writers(store)


def test_an_account_imports_a_store_only_where_each_of_its_users_may_write_it() -> None:
    """Whatever the server publishes in an account on an imported subject goes through: a
    store's subjects are imported only into an account whose every user may write it."""
    for link in links():
        for store in STORES.values():
            if link.kind == "service" and covers(store.subjects, link.subject):
                users = [role.name for role in members(link.importer) if not role.admin]
                assert set(users) <= writers(store), f"{link.importer} imports {store.stream}"


def test_an_account_imports_each_subject_from_one_account() -> None:
    for account in ACCOUNTS:
        named = [link.to or link.subject for link in links() if link.importer == account]
        overlapping = [(a, b) for a in named for b in named if a != b and covers(a, b)]
        assert len(named) == len(set(named)) and overlapping == [], account


def test_a_stream_read_in_another_account_is_mirrored_there() -> None:
    for role in ROLES.values():
        for stream in read_streams(role):
            assert stream in STORES, f"{role.name} reads {stream}, which is no store"
            home = STORES[stream].account
            assert home == role.account or stream in mirrors(role.account), role.name
    assert mirrors(READ_ACCOUNT) == (KEY_EVENTS_STREAM, CHECKPOINTS_STREAM, s.USAGE_STREAM)


def test_the_contracts_name_the_mirrors_links_as_the_accounts_do() -> None:
    assert (api_prefix(KEYLOG_ACCOUNT), deliver_prefix(KEYLOG_ACCOUNT)) == (
        s.KEYLOG_API,
        s.KEYLOG_DELIVER_PREFIX,
    )
    assert (api_prefix(USAGE_ACCOUNT), deliver_prefix(USAGE_ACCOUNT)) == (
        s.USAGE_API,
        s.USAGE_DELIVER_PREFIX,
    )
    assert STORES[s.USAGE_STREAM].account == USAGE_ACCOUNT  # its counter reads it, unmirrored


def test_an_admin_that_reaches_other_accounts_is_alone_in_its_own() -> None:
    """Its imports carry whole JetStream APIs and every store's subjects: anyone beside it
    could have the server send there (a reply subject it names)."""
    for role in ROLES.values():
        if role.manages:
            assert role.admin and [x.name for x in members(role.account)] == [role.name]
            assert role.account not in role.manages and KEYLOG_ACCOUNT not in role.manages
