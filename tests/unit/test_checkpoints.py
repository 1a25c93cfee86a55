"""Signed checkpoints: the signed bytes exactly, signing and verifying, the keys' files and
settings (the audit `events verify` makes: test_checkpoint_audit.py)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest

from aitbc_contracts import checkpoints as wire
from aitbc_infra.bus_config import BusCredentials, new_user_seed
from aitbc_infra.stack import Layout
from aitbc_keys.settings import Settings
from aitbc_runtime.checkpoint_keys import (
    CheckpointKeyError,
    CheckpointSigner,
    TrustedKey,
    new_signing_seed,
    read_checkpoint,
)

WHEN = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
SEED = new_signing_seed()
SIGNER = CheckpointSigner(SEED)
TRUSTED = TrustedKey(SIGNER.key_id)


def test_the_signed_bytes_are_seven_exact_lines() -> None:
    checkpoint = wire.Checkpoint(
        number=12, position=1200, chain_hash="ab" * 32, signed_at=WHEN, key_id="OKEY"
    )
    assert wire.signed_bytes(checkpoint) == (
        b"aitbc-key-checkpoint/1\n"
        b"AITBC_KEY_EVENTS\n"
        b"12\n"
        b"1200\n" + b"ab" * 32 + b"\n"
        b"2026-01-02T03:04:05.000006Z\n"
        b"OKEY\n"
    )
    # The same instant in another zone is the same checkpoint.
    elsewhere = msgspec.structs.replace(
        checkpoint, signed_at=WHEN.astimezone(timezone(timedelta(hours=2)))
    )
    assert wire.signed_bytes(elsewhere) == wire.signed_bytes(checkpoint)


def test_a_signed_checkpoint_verifies_and_survives_the_wire() -> None:
    signed = SIGNER.sign(number=1, position=5, chain_hash="0" * 64, signed_at=WHEN)
    assert signed.key_id == SIGNER.key_id and signed.key_id.startswith("O")
    assert len(signed.signature) == 64
    again = read_checkpoint(wire.encode(signed))
    assert again == signed
    assert TRUSTED.check(signed) is None


@pytest.mark.parametrize(
    "change",
    [
        {"number": 2},
        {"position": 6},
        {"chain_hash": "1" * 64},
        {"signed_at": WHEN + timedelta(microseconds=1)},
        {"log": "OTHER"},
    ],
)
def test_any_change_to_a_signed_field_breaks_the_signature(change: dict[str, object]) -> None:
    signed = SIGNER.sign(number=1, position=5, chain_hash="0" * 64, signed_at=WHEN)
    altered = msgspec.structs.replace(signed, **change)
    assert TRUSTED.check(altered) == "its signature does not verify under the trusted key"


def test_a_checkpoint_signed_by_another_key_is_not_trusted_whatever_it_names() -> None:
    other = CheckpointSigner(new_signing_seed())
    theirs = other.sign(number=1, position=5, chain_hash="0" * 64, signed_at=WHEN)
    assert "another key" in str(TRUSTED.check(theirs))
    # Naming the trusted key does not help: the key id is signed, and the signature is theirs.
    claimed = msgspec.structs.replace(theirs, key_id=SIGNER.key_id)
    assert TRUSTED.check(claimed) == "its signature does not verify under the trusted key"


@pytest.mark.parametrize(
    "data",
    [
        b"{}",
        b"not json",
        b'{"number":1,"position":5,"chain_hash":"' + b"0" * 64 + b'",'
        b'"signed_at":"2026-01-02T03:04:05","key_id":"OK","signature":""}',  # no zone
        b'{"number":1,"position":5,"chain_hash":"' + b"0" * 64 + b'",'
        b'"signed_at":"2026-01-02T03:04:05Z","key_id":"O\\nK","signature":""}',  # a line break
        b'{"number":0,"position":5,"chain_hash":"' + b"0" * 64 + b'",'
        b'"signed_at":"2026-01-02T03:04:05Z","key_id":"OK","signature":""}',
    ],
)
def test_what_is_not_a_well_formed_checkpoint_is_refused_with_a_reason(data: bytes) -> None:
    found = read_checkpoint(data)
    assert isinstance(found, str) and found.startswith("not a checkpoint")


def test_the_signing_key_file_must_be_private_and_an_operator_seed(tmp_path: Path) -> None:
    key = tmp_path / "checkpoint-key.nk"
    key.write_text(SEED + "\n")
    key.chmod(0o644)
    with pytest.raises(CheckpointKeyError, match="readable by others") as refused:
        CheckpointSigner.from_file(str(key))
    key.chmod(0o600)
    assert CheckpointSigner.from_file(str(key)).key_id == SIGNER.key_id
    user = tmp_path / "user.nk"
    user.write_text(new_user_seed() + "\n")  # a role's NATS seed, not a signing key
    user.chmod(0o600)
    with pytest.raises(CheckpointKeyError, match="operator nkey seed"):
        CheckpointSigner.from_file(str(user))
    assert SEED not in str(refused.value)


def test_a_trusted_key_is_given_written_out_or_in_a_file(tmp_path: Path) -> None:
    pub = tmp_path / "checkpoint-key.pub"
    pub.write_text(SIGNER.key_id + "\n")
    assert TrustedKey.parse(str(pub)) == TRUSTED == TrustedKey.parse(SIGNER.key_id)
    for bad in ("O" + "A" * 55, "nonsense", str(tmp_path / "absent.pub"), SEED):
        with pytest.raises(CheckpointKeyError):
            TrustedKey.parse(bad)


def test_just_up_makes_the_signing_key_and_hands_it_to_the_keys_service_only(
    tmp_path: Path,
) -> None:
    layout = Layout(data_dir=tmp_path)
    credentials = BusCredentials(tmp_path / "creds").provision()
    made = credentials.checkpoint_key.read_text()
    assert os.stat(credentials.checkpoint_key).st_mode & 0o777 == 0o600
    public = credentials.checkpoint_public_key.read_text().strip()
    assert TrustedKey.parse(str(credentials.checkpoint_public_key)).key_id == public
    assert CheckpointSigner.from_file(str(credentials.checkpoint_key)).key_id == public
    credentials.provision()
    assert credentials.checkpoint_key.read_text() == made  # kept across starts
    credentials.checkpoint_key.unlink()  # rotated: a new key, and its public key beside it
    credentials.provision()
    rotated = CheckpointSigner.from_file(str(credentials.checkpoint_key)).key_id
    assert rotated != public
    assert credentials.checkpoint_public_key.read_text().strip() == rotated
    keys = layout.role_env("keys")
    assert keys["KEYS_CHECKPOINT_KEY_FILE"] == str(credentials.checkpoint_key)
    assert layout.role_env("admin")["KEYS_CHECKPOINT_PUBLIC_KEY"].endswith(".pub")
    for role in ("edge", "usage", "admin", "auditor", "analytics"):
        assert "KEYS_CHECKPOINT_KEY_FILE" not in layout.role_env(role)


def test_the_cadence_comes_from_the_environment_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEYS_CHECKPOINT_KEY_FILE", "/run/secrets/checkpoint-key.nk")
    monkeypatch.setenv("KEYS_CHECKPOINT_EVERY_EVENTS", "50")
    monkeypatch.setenv("KEYS_CHECKPOINT_EVERY_SECONDS", "2.5")
    settings = Settings.from_env()
    assert (
        settings.checkpoint_key_file,
        settings.checkpoint_every_events,
        settings.checkpoint_every_seconds,
    ) == ("/run/secrets/checkpoint-key.nk", 50, 2.5)
    monkeypatch.setenv("KEYS_CHECKPOINT_EVERY_EVENTS", "0")
    with pytest.raises(ValueError, match="KEYS_CHECKPOINT_EVERY_EVENTS must be more than 0"):
        Settings.from_env()
    monkeypatch.setenv("KEYS_CHECKPOINT_EVERY_EVENTS", "many")
    with pytest.raises(ValueError, match="is not a number"):
        Settings.from_env()


async def test_the_keys_service_does_not_start_with_a_key_others_may_read(tmp_path: Path) -> None:
    from aitbc_keys.main import running_service

    key = tmp_path / "checkpoint-key.nk"
    key.write_text(SEED + "\n")
    key.chmod(0o640)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}", checkpoint_key_file=str(key)
    )
    with pytest.raises(CheckpointKeyError, match="readable by others: chmod 600 it"):
        async with running_service(settings):
            pass
    assert not (tmp_path / "keys.db").exists()  # refused before anything was touched


def test_the_keys_service_warns_at_start_that_it_signs_no_checkpoints_without_a_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Unset is allowed (tests, a first try), but a deployment that forgot the key would run
    # with checkpoints off and nothing else saying so.
    from aitbc_keys.main import checkpoint_signer

    with caplog.at_level("WARNING", logger="aitbc_keys"):
        assert checkpoint_signer(Settings()) is None
    assert "no KEYS_CHECKPOINT_KEY_FILE: the key event log is not checkpointed" in caplog.text
    key = tmp_path / "checkpoint-key.nk"
    key.write_text(SEED + "\n")
    key.chmod(0o600)
    caplog.clear()
    with caplog.at_level("WARNING", logger="aitbc_keys"):
        signer = checkpoint_signer(Settings(checkpoint_key_file=str(key)))
    assert signer is not None and signer.key_id == SIGNER.key_id and caplog.text == ""


def test_a_subject_names_a_checkpoint_only_by_decimal_digits() -> None:
    prefix = wire.KEY_CHECKPOINTS_PREFIX
    assert wire.number_of_subject(f"{prefix}.12") == 12
    for tail in ("²", "1²", "-1", "", "x"):  # ² passes str.isdigit, and int() refuses it
        assert wire.number_of_subject(f"{prefix}.{tail}") is None
