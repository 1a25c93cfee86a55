"""How a process reaches the bus as its role: credentials read once, checked, never shown."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aitbc_infra.bus_config import BusCredentials, server_config
from aitbc_infra.bus_roles import ROLES
from aitbc_runtime.bus_access import BusAccess, BusAccessError, inbox_prefix


@pytest.fixture
def credentials(tmp_path: Path) -> BusCredentials:
    return BusCredentials(tmp_path / "creds").provision()


def test_every_role_gets_a_seed_only_its_owner_can_read(credentials: BusCredentials) -> None:
    assert stat.S_IMODE(credentials.folder.stat().st_mode) == 0o700
    for role in ROLES:
        file = credentials.file(role)
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert file.read_text().startswith("SU")  # an nkey user seed


def test_provisioning_again_keeps_the_seeds_clients_already_use(
    credentials: BusCredentials,
) -> None:
    before = {role: credentials.file(role).read_text() for role in ROLES}
    credentials.provision()
    assert {role: credentials.file(role).read_text() for role in ROLES} == before


def test_a_role_connects_with_its_seed_file_and_its_own_inbox(
    credentials: BusCredentials,
) -> None:
    access = credentials.access("edge", "nats://a:1, nats://b:2")
    options = access.options()
    assert options["servers"] == ["nats://a:1", "nats://b:2"]
    assert options["nkeys_seed"] == str(credentials.file("edge"))
    assert options["inbox_prefix"] == inbox_prefix(credentials.public_key("edge"))
    assert "tls" not in options
    assert "SU" not in access.where()  # the seed never shows in a log line


def test_a_seed_file_others_can_read_is_refused(credentials: BusCredentials) -> None:
    file = credentials.file("keys")
    file.chmod(0o644)
    with pytest.raises(BusAccessError, match="chmod 600"):
        BusAccess("nats://x:1", creds=str(file)).options()


def test_a_file_that_holds_no_seed_is_refused_without_echoing_it(tmp_path: Path) -> None:
    file = tmp_path / "not-a-seed"
    file.write_text("SUSPICIOUS-CONTENT")
    file.chmod(0o600)
    with pytest.raises(BusAccessError) as refused:
        BusAccess("nats://x:1", creds=str(file)).options()
    assert "SUSPICIOUS" not in str(refused.value)


def test_from_env_reads_credentials_and_tls_and_the_keys_writer_has_its_own() -> None:
    env = {"NATS_URL": "nats://n:4", "NATS_CREDS": "/c/keys.nk", "NATS_WRITER_CREDS": "/c/w.nk"}
    assert BusAccess.from_env(env).creds == "/c/keys.nk"
    assert BusAccess.from_env(env, creds="NATS_WRITER_CREDS").creds == "/c/w.nk"
    assert BusAccess.from_env({**env, "NATS_TLS_CA": "/ca.pem"}).tls_ca == "/ca.pem"


def test_a_list_of_servers_is_every_server_of_it_for_nats_py() -> None:
    access = BusAccess.from_env({"NATS_URL": " nats://a:1, nats://b:2 ,,nats://c:3"})
    assert access.servers == ["nats://a:1", "nats://b:2", "nats://c:3"]
    assert access.options()["servers"] == access.servers
    assert (access.replicas, BusAccess.from_env({"NATS_REPLICAS": "3"}).replicas) == (1, 3)


def test_the_server_config_names_every_role_and_no_seed(credentials: BusCredentials) -> None:
    config = server_config(4999, Path("/js"), credentials)
    for role in ROLES:
        assert credentials.public_key(role) in config
        assert credentials.file(role).read_text().strip() not in config
    assert config.count("allow_responses: true") == sum(r.responds for r in ROLES.values())
    assert "$JS.API.STREAM.PURGE.>" in config  # denied to all but admin


def test_no_role_but_admin_may_destroy_or_answer_everything() -> None:
    for role in ROLES.values():
        if role.admin:
            continue
        assert ">" not in role.publish and ">" not in role.subscribe
        assert not any("DELETE.>" in s and "CONSUMER" not in s for s in role.publish)
        assert not any("PURGE" in s for s in role.publish)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://op:s3cret@h:4222", "nats://op:***@h:4222"),
        ("nats://s3cret@h:4222", "nats://***@h:4222"),  # nats-py reads a lone name as a token
        ("op:s3cret@h:4222", "op:***@h:4222"),  # no scheme: still found
        ("tls://a:1, nats://op:s3cret@b:2", "tls://a:1, nats://op:***@b:2"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
    ],
)
def test_where_never_shows_a_password_or_token_of_the_url(url: str, shown: str) -> None:
    assert BusAccess(url).where() == shown
