"""The `aitbc` command line's arguments: where it finds the bus and the keys database (the
environment, the options, or where `just up` keeps them), and the usage it prints for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from aitbc_cli.bus import access_of
from aitbc_cli.main import build_parser


def test_nats_url_comes_from_the_environment_or_the_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.delenv("NATS_PORT", raising=False)
    assert build_parser().parse_args(["keys", "list", "--account", "a"]).nats_url == (
        "nats://127.0.0.1:4322"
    )
    monkeypatch.setenv("NATS_URL", "nats://elsewhere:4222")
    assert build_parser().parse_args(["keys", "list", "--account", "a"]).nats_url == (
        "nats://elsewhere:4222"
    )
    before = build_parser().parse_args(
        ["--nats-url", "nats://x:1", "keys", "list", "--account", "a"]
    )
    after = build_parser().parse_args(
        ["keys", "list", "--account", "a", "--nats-url", "nats://y:2"]
    )
    assert before.nats_url == "nats://x:1"
    assert after.nats_url == "nats://y:2"


def test_without_nats_url_the_cli_reaches_nats_on_the_port_just_up_starts_it_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.setenv("NATS_PORT", "4999")
    args = build_parser().parse_args(["keys", "list", "--account", "a"])
    assert args.nats_url == "nats://127.0.0.1:4999"
    monkeypatch.setenv("NATS_URL", "nats://elsewhere:4222")  # a server of one's own wins
    assert build_parser().parse_args(["events", "replay"]).nats_url == "nats://elsewhere:4222"


def test_credentials_come_from_the_option_the_environment_or_just_ups_admin_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NATS_CREDS", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert build_parser().parse_args(["events", "replay"]).creds == ""  # none made: anonymous
    admin = tmp_path / "creds" / "admin.nk"
    admin.parent.mkdir()
    admin.write_text("seed")
    assert build_parser().parse_args(["events", "replay"]).creds == str(admin)
    monkeypatch.setenv("NATS_CREDS", "/elsewhere/auditor.nk")
    args = build_parser().parse_args(["events", "replay", "--creds", "/mine/admin.nk"])
    assert args.creds == "/mine/admin.nk"
    assert access_of(args).creds == "/mine/admin.nk"
    assert build_parser().parse_args(["events", "replay"]).creds == "/elsewhere/auditor.nk"


def test_events_verify_reads_the_keys_database_where_just_up_keeps_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    args = build_parser().parse_args(["events", "verify"])
    assert args.database_url == f"sqlite+aiosqlite:///{tmp_path}/data/keys.db"
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/keys")  # the keys service's own wins
    assert build_parser().parse_args(["events", "verify"]).database_url == "postgresql://db/keys"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["accounts"],
        ["accounts", "create"],
        ["accounts", "create", "--plan", "platinum"],
        ["accounts", "set-plan", "acc_1"],
        ["accounts", "set-plan", "acc_1", "gold"],
        ["keys", "list"],
        ["keys", "revoke"],
        ["keys", "create", "--account", "acc_0123456789abcdef", "--name", "x", "--rate-limit", "0"],
        ["usage", "tail", "--count", "0"],
        ["usage", "tail", "--count", "-1"],
        ["nonsense"],
    ],
)
def test_bad_arguments_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "usage: aitbc" in capsys.readouterr().err
