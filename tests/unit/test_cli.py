"""The `aitbc` command line: what it parses, what it sends, what the operator sees."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aitbc_cli.main import run
from aitbc_cli.output import keys_table, table, when
from aitbc_contracts.events import Plan
from aitbc_contracts.keyformat import hash_key, hint, is_well_formed
from aitbc_contracts.messages import (
    OPERATOR,
    AccountView,
    AnyCommand,
    CreateAccount,
    KeyList,
    KeyView,
    ListKeys,
    Rejected,
    ReplaceMasterKey,
    Reply,
    RevokeKey,
    SetPlan,
)

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeKeys:
    """Stands in for the keys service: records commands, answers with a canned reply."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.sent: list[AnyCommand] = []

    async def __call__(self, command: AnyCommand) -> Reply:
        self.sent.append(command)
        return self.reply


def account(plan: Plan = "free") -> AccountView:
    return AccountView(
        account_id="acc_1", name="Acme", plan=plan, master_key_id="key_m", created_at=T0
    )


def key(key_id: str = "key_1", **changes: object) -> KeyView:
    values: dict[str, object] = {
        "key_id": key_id,
        "account_id": "acc_1",
        "name": "ci",
        "kind": "standard",
        "hint": "aitbc_AbCd",
        "status": "active",
        "created_at": T0,
    }
    values.update(changes)
    return KeyView(**values)  # type: ignore[arg-type]


def call(argv: list[str], reply: Reply) -> tuple[int, str, str, FakeKeys]:
    fake = FakeKeys(reply)
    out, err = io.StringIO(), io.StringIO()
    code = run(argv, send=fake, out=out, err=err)
    return code, out.getvalue(), err.getvalue(), fake


# --- settings (where they come from: test_cli_arguments.py) -------------------------------


def test_a_nats_port_that_is_no_number_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.setenv("NATS_PORT", "fourthousand")
    code, out, err, keys = call(["keys", "list", "--account", "a"], KeyList([]))
    assert code == 1
    assert err == "aitbc: error: NATS_PORT is not a port number: 'fourthousand'\n"
    assert (out, keys.sent) == ("", [])


# --- accounts ------------------------------------------------------------------------------


def test_create_account_sends_only_the_hash_and_prints_the_key_once() -> None:
    code, out, _, fake = call(
        ["accounts", "create", "--plan", "pro", "--name", "Acme"], account("pro")
    )
    assert code == 0
    [command] = fake.sent
    assert isinstance(command, CreateAccount)
    assert command.plan == "pro" and command.name == "Acme" and command.actor == OPERATOR
    master_key = next(
        line.split()[-1] for line in out.splitlines() if line.startswith("master key:")
    )
    assert is_well_formed(master_key)
    assert command.master_key_hash == hash_key(master_key)
    assert command.master_key_hint == hint(master_key)
    assert master_key not in repr(command)  # the plaintext never leaves the CLI
    assert "acc_1" in out
    assert out.count(master_key) == 1


def test_a_new_master_key_is_made_here_sent_as_its_hash_and_printed_once() -> None:
    reply = key("key_new", kind="master", name="master")
    code, out, _, fake = call(["accounts", "new-master-key", "acc_1", "--reason", "lost"], reply)
    assert code == 0
    [command] = fake.sent
    assert isinstance(command, ReplaceMasterKey)
    assert (command.account_id, command.reason, command.actor) == ("acc_1", "lost", OPERATOR)
    master_key = next(
        line.split()[-1] for line in out.splitlines() if line.startswith("master key:")
    )
    assert is_well_formed(master_key) and out.count(master_key) == 1
    assert command.secret_hash == hash_key(master_key) and command.hint == hint(master_key)
    assert master_key not in repr(command)
    assert "key_new" in out and "revoked" in out

    code, out, _, fake = call(["accounts", "new-master-key", "acc_1", "--json"], reply)
    data = json.loads(out)
    assert (data["key_id"], data["kind"]) == ("key_new", "master")
    assert hash_key(data["master_key"]) == fake.sent[0].secret_hash  # type: ignore[union-attr]


def test_create_account_as_json() -> None:
    code, out, _, fake = call(["accounts", "create", "--plan", "free", "--json"], account())
    assert code == 0
    data = json.loads(out)
    assert data["account_id"] == "acc_1"
    assert data["plan"] == "free"
    assert data["master_key_id"] == "key_m"
    assert data["created_at"] == "2025-01-02T03:04:05Z"
    assert hash_key(data["master_key"]) == fake.sent[0].master_key_hash  # type: ignore[union-attr]
    assert "type" not in data


def test_every_account_gets_a_new_master_key() -> None:
    first = call(["accounts", "create", "--plan", "free", "--json"], account())
    second = call(["accounts", "create", "--plan", "free", "--json"], account())
    assert json.loads(first[1])["master_key"] != json.loads(second[1])["master_key"]


def test_set_plan() -> None:
    code, out, _, fake = call(
        ["accounts", "set-plan", "acc_1", "enterprise"], account("enterprise")
    )
    assert code == 0
    assert fake.sent == [SetPlan(account_id="acc_1", plan="enterprise")]
    assert "enterprise" in out
    code, out, _, _ = call(["accounts", "set-plan", "acc_1", "enterprise", "--json"], account())
    assert json.loads(out)["account_id"] == "acc_1"


def test_a_rejection_prints_its_code_and_message_and_exits_1() -> None:
    code, out, err, _ = call(
        ["accounts", "set-plan", "acc_nope", "pro"], Rejected("NOT_FOUND", "no account acc_nope")
    )
    assert code == 1
    assert out == ""
    assert err == "aitbc: NOT_FOUND: no account acc_nope\n"


def test_an_unexpected_reply_is_an_error_not_a_crash() -> None:
    code, _, err, _ = call(["accounts", "set-plan", "acc_1", "pro"], KeyList(keys=[]))
    assert code == 1
    assert "expected a AccountView reply" in err


# --- keys ----------------------------------------------------------------------------------


def test_keys_list_prints_a_table() -> None:
    keys = [
        key("key_master", name="", kind="master"),
        key("key_2", status="revoked", expires_at=T0 + timedelta(days=30)),
    ]
    code, out, _, fake = call(["keys", "list", "--account", "acc_1"], KeyList(keys=keys))
    assert code == 0
    assert fake.sent == [ListKeys(account_id="acc_1")]
    header, master, second = out.splitlines()
    assert header.split() == ["KEY", "ID", "NAME", "KIND", "STATUS", "HINT", "CREATED", "EXPIRES"]
    assert master.split() == [
        "key_master", "-", "master", "active", "aitbc_AbCd...", "2025-01-02", "03:04:05Z", "-",
    ]  # fmt: skip
    assert "revoked" in second and "2025-02-01 03:04:05Z" in second


def test_keys_list_as_json() -> None:
    code, out, _, _ = call(["keys", "list", "--account", "acc_1", "--json"], KeyList([key()]))
    assert code == 0
    [listed] = json.loads(out)["keys"]
    assert listed["key_id"] == "key_1"
    assert listed["status"] == "active"
    assert listed["expires_at"] is None


def test_an_account_without_keys() -> None:
    assert call(["keys", "list", "--account", "acc_1"], KeyList([]))[1] == "no keys\n"


def test_revoke_acts_as_the_operator_on_any_account() -> None:
    revoked = key(status="revoked", revoked_at=T0)
    code, out, _, fake = call(["keys", "revoke", "key_1", "--reason", "leaked"], revoked)
    assert code == 0
    assert fake.sent == [
        RevokeKey(account_id=None, key_id="key_1", reason="leaked", actor=OPERATOR)
    ]
    assert "revoked" in out
    code, out, _, _ = call(["keys", "revoke", "key_1", "--json"], revoked)
    assert json.loads(out)["status"] == "revoked"


def test_revoking_an_unknown_key() -> None:
    code, _, err, _ = call(["keys", "revoke", "key_x"], Rejected("NOT_FOUND", "no key key_x"))
    assert code == 1
    assert err.startswith("aitbc: NOT_FOUND:")


# --- output --------------------------------------------------------------------------------


def test_table_aligns_columns_without_trailing_spaces() -> None:
    text = table(["A", "LONGER"], [["wide cell", "x"], ["y", ""]])
    assert text.splitlines() == ["A          LONGER", "wide cell  x", "y"]


def test_timestamps_are_shown_to_the_second() -> None:
    assert when(None) == "-"
    assert when(T0.replace(microsecond=123)) == "2025-01-02 03:04:05Z"
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    assert when(plus_two) == "2025-01-02 05:04:05+02:00"


def test_keys_table_never_shows_more_than_the_hint() -> None:
    assert "aitbc_AbCd..." in keys_table([key()])


# --- names from the log, printed for people ----------------------------------------------------

HOSTILE_NAME = "gpj.\u202eexe\x1b[2J\x9b31m"  # a bidi override, an escape sequence, a C1 CSI


def test_hostile_names_from_the_log_are_printed_escaped() -> None:
    listing = KeyList(keys=[key(name=HOSTILE_NAME)])
    code, out, _, _ = call(["keys", "list", "--account", "acc_1"], listing)
    assert code == 0
    assert "gpj.\\u202eexe\\x1b[2J\\x9b31m" in out
    assert not any(c in out for c in "\u202e\x1b\x9b")

    code, out, _, _ = call(["keys", "list", "--account", "acc_1", "--json"], listing)
    assert not any(c in out for c in "\u202e\x1b\x9b")
    assert json.loads(out)["keys"][0]["name"] == HOSTILE_NAME  # the same value, spelled safely

    named = AccountView(
        account_id="acc_1", name=HOSTILE_NAME, plan="free", master_key_id="key_m", created_at=T0
    )
    code, out, _, _ = call(["accounts", "set-plan", "acc_1", "free"], named)
    assert code == 0 and "\u202e" not in out and "\\u202e" in out


def test_a_refusal_is_printed_escaped() -> None:
    code, _, err, _ = call(
        ["keys", "list", "--account", "acc_1"], Rejected("NOT_FOUND", "no \x1b]0;x\x07 here")
    )
    assert code == 1 and "\x1b" not in err and "\x07" not in err and "\\x1b]0;x\\x07" in err
