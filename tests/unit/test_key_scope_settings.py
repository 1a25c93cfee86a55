"""The edge's settings of what keys may call and read: MASTER_KEY_DATA_PLANE and
STANDARD_KEY_USAGE, with the seed's behaviour by default."""

from __future__ import annotations

import pytest

from aitbc_api.settings import Settings


def test_by_default_master_keys_call_the_api_and_standard_keys_read_the_accounts_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MASTER_KEY_DATA_PLANE", raising=False)
    monkeypatch.delenv("STANDARD_KEY_USAGE", raising=False)
    settings = Settings.from_env()
    assert (settings.master_key_data_plane, settings.standard_key_usage) == (True, "account")


def test_both_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTER_KEY_DATA_PLANE", "0")
    monkeypatch.setenv("STANDARD_KEY_USAGE", " Own ")
    settings = Settings.from_env()
    assert (settings.master_key_data_plane, settings.standard_key_usage) == (False, "own")


def test_an_unknown_usage_scope_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDARD_KEY_USAGE", "mine")
    with pytest.raises(ValueError, match="STANDARD_KEY_USAGE must be one of account, own, none"):
        Settings.from_env()
