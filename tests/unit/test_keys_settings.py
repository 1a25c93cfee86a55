"""Keys service settings: defaults, URL normalisation, the SQLite data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from aitbc_keys.settings import Settings, get_settings
from aitbc_runtime.bus_access import BusAccess


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db:5432/keys", "postgresql+asyncpg://u:p@db:5432/keys"),
        ("postgres://u@db/keys", "postgresql+asyncpg://u@db/keys"),
        ("postgresql+asyncpg://u@db/keys", "postgresql+asyncpg://u@db/keys"),
        ("sqlite:///data/keys.db", "sqlite+aiosqlite:///data/keys.db"),
        ("sqlite+aiosqlite:////abs/keys.db", "sqlite+aiosqlite:////abs/keys.db"),
    ],
)
def test_database_urls_get_an_async_driver(given: str, used: str) -> None:
    assert Settings(database_url=given).database_url == used


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NATS_URL", "nats://10.0.0.1:4222")
    monkeypatch.setenv("NATS_CREDS", "/run/creds/keys.nk")
    monkeypatch.setenv("NATS_WRITER_CREDS", "/run/creds/keys-writer.nk")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/deep/er/keys.db")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings == Settings(
            nats=BusAccess("nats://10.0.0.1:4222", creds="/run/creds/keys.nk"),
            nats_writer=BusAccess("nats://10.0.0.1:4222", creds="/run/creds/keys-writer.nk"),
            database_url=f"sqlite+aiosqlite:///{tmp_path}/deep/er/keys.db",
            log_level="DEBUG",
        )
        assert (tmp_path / "deep" / "er").is_dir()
        assert get_settings() is settings
    finally:
        get_settings.cache_clear()


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NATS_URL", "NATS_PORT", "DATA_DIR", "DATABASE_URL", "LOG_LEVEL", "NATS_CREDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("NATS_WRITER_CREDS", raising=False)
    settings = Settings.from_env()
    assert settings.writer == settings.nats  # one user for both, where no second one is given
    assert (settings.nats, settings.database_url, settings.log_level) == (
        BusAccess("nats://127.0.0.1:4322"),
        f"sqlite+aiosqlite:///{Path('.data').resolve()}/keys.db",
        "INFO",
    )


def test_the_cap_of_keys_per_account_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().max_keys_per_account == 100
    monkeypatch.setenv("MAX_KEYS_PER_ACCOUNT", "7")
    assert Settings.from_env().max_keys_per_account == 7
    for wrong in ("0", "-1", "ten", "2.5"):
        monkeypatch.setenv("MAX_KEYS_PER_ACCOUNT", wrong)
        with pytest.raises(ValueError, match="MAX_KEYS_PER_ACCOUNT"):
            Settings.from_env()


def test_the_relays_lease_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().lease_seconds == Settings.from_env().lease_seconds == 2.0
    monkeypatch.setenv("KEYS_LEASE_SECONDS", "0.5")
    assert Settings.from_env().lease_seconds == 0.5
    for wrong in ("0", "-1", "two", "0.1"):  # under 0.2 s the relay would only move about
        monkeypatch.setenv("KEYS_LEASE_SECONDS", wrong)
        with pytest.raises(ValueError, match="KEYS_LEASE_SECONDS"):
            Settings.from_env()
