"""Where the shared pieces are (aitbc_runtime.environment): as `just up` places them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aitbc_infra.runner import Config
from aitbc_keys.settings import Settings as KeysSettings
from aitbc_runtime import environment
from aitbc_usage.settings import Settings as UsageSettings


def test_defaults_are_the_local_nats_and_the_data_folder(tmp_path: Path) -> None:
    data = (Path.cwd() / ".data").resolve()
    assert environment.nats_url({}) == "nats://127.0.0.1:4322"
    assert environment.data_dir({}) == data
    assert environment.keys_database_url({}) == f"sqlite+aiosqlite:///{data}/keys.db"
    assert environment.usage_database_url({}) == f"sqlite+aiosqlite:///{data}/usage.db"


def test_each_setting_moves_what_depends_on_it(tmp_path: Path) -> None:
    env = {"NATS_PORT": "4999", "DATA_DIR": str(tmp_path)}
    assert environment.nats_url(env) == "nats://127.0.0.1:4999"
    assert environment.keys_database_url(env) == f"sqlite+aiosqlite:///{tmp_path}/keys.db"
    assert environment.usage_database_url(env) == f"sqlite+aiosqlite:///{tmp_path}/usage.db"
    own = {
        **env,
        "NATS_URL": "nats://a:1,nats://b:2",
        "DATABASE_URL": "postgresql://db/keys",
        "USAGE_DATABASE_URL": "postgresql://db/usage",
    }
    assert environment.nats_url(own) == "nats://a:1,nats://b:2"
    assert environment.keys_database_url(own) == "postgresql://db/keys"
    assert environment.usage_database_url(own) == "postgresql://db/usage"
    empty = {"NATS_URL": "", "NATS_PORT": "", "DATA_DIR": "", "DATABASE_URL": ""}
    assert environment.nats_url(empty) == environment.nats_url({})  # empty is unset
    assert environment.keys_database_url(empty) == environment.keys_database_url({})


def test_replicas_are_one_unless_a_cluster_asks_for_more() -> None:
    assert environment.nats_replicas({}) == environment.nats_replicas({"NATS_REPLICAS": ""}) == 1
    assert environment.nats_replicas({"NATS_REPLICAS": "3"}) == 3
    for wrong in ("0", "6", "three", "-1"):
        with pytest.raises(ValueError, match=f"NATS_REPLICAS must be .*{wrong!r}"):
            environment.nats_replicas({"NATS_REPLICAS": wrong})


def test_a_nats_port_that_is_no_number_says_which_setting_is_wrong() -> None:
    with pytest.raises(ValueError, match="NATS_PORT is not a port number: 'x'"):
        environment.nats_url({"NATS_PORT": "x"})


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"NATS_PORT": "4999"},
        {"NATS_URL": "nats://elsewhere:4222", "DATABASE_URL": "postgresql://db/keys"},
        {"USAGE_DATABASE_URL": "postgresql://db/usage"},
    ],
)
def test_the_runner_tells_the_services_what_the_others_derive(
    env: dict[str, str], tmp_path: Path
) -> None:
    env = {"DATA_DIR": str(tmp_path), **env}
    told = Config.from_env(env).layout.child_env("usage")
    assert told["NATS_URL"] == environment.nats_url(env)
    if "NATS_URL" not in env:  # its own server: each service presents its role's credentials
        assert told["NATS_CREDS"] == str(tmp_path / "creds" / "usage.nk")
    assert told["DATABASE_URL"] == environment.keys_database_url(env)
    assert told["USAGE_DATABASE_URL"] == environment.usage_database_url(env)


@pytest.mark.parametrize(
    ("settings_of", "database", "file"),
    [
        (KeysSettings.from_env, "DATABASE_URL", "keys.db"),
        (UsageSettings.from_env, "USAGE_DATABASE_URL", "usage.db"),
    ],
    ids=["keys", "usage"],
)
def test_each_service_follows_the_same_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    settings_of: Callable[[], KeysSettings | UsageSettings],
    database: str,
    file: str,
) -> None:
    for name in ("NATS_URL", database):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NATS_PORT", "4999")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NATS_CREDS", str(tmp_path / "creds" / "role.nk"))
    monkeypatch.setenv("NATS_REPLICAS", "3")
    settings = settings_of()
    assert settings.nats.url == "nats://127.0.0.1:4999"
    assert settings.nats.replicas == 3
    assert settings.nats.creds == str(tmp_path / "creds" / "role.nk")
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/{file}"
