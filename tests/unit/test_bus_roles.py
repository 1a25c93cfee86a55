"""The permission table (aitbc_infra.bus_roles): docs/security.md shows it row for row, and the
rules it must keep whatever is added to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aitbc_contracts import subjects as s
from aitbc_infra.bus_config import user_entry
from aitbc_infra.bus_roles import DESTRUCTIVE, KEYLOG_ACCOUNT, ROLES, Role

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
