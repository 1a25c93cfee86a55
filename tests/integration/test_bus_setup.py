"""`aitbc-bus-config`: the credentials and the accounts file for a nats-server that `just up`
does not start, which every configuration in infra/nats/ includes; and the mirrored streams and
their mirrors made on a running bus."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aitbc_infra.bus_accounts import mirrors
from aitbc_infra.bus_config import BusCredentials
from aitbc_infra.bus_roles import ROLES
from aitbc_infra.bus_setup import main
from aitbc_infra.bus_stores import ACCOUNTS
from aitbc_infra.bus_tls import BusTls
from aitbc_infra.dev_ca import DevCA
from aitbc_infra.nats_server import NatsServer, free_port
from tests.integration.shipped_nats import CONFIGS, loads, shipped, with_accounts


def test_it_makes_every_roles_seed_privately_and_keeps_them(tmp_path: Path) -> None:
    seeds = tmp_path / "creds"
    assert main([str(seeds)]) == 0
    first = {role: (seeds / f"{role}.nk").read_text() for role in ROLES}
    for role in ROLES:
        assert stat.S_IMODE((seeds / f"{role}.nk").stat().st_mode) == 0o600
    assert stat.S_IMODE(seeds.stat().st_mode) == 0o700
    assert main([str(seeds)]) == 0
    assert {role: (seeds / f"{role}.nk").read_text() for role in ROLES} == first
    accounts = (seeds / "auth.conf").read_text()
    assert not any(seed.strip() in accounts for seed in first.values())  # public keys only


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_every_nats_config_takes_the_accounts_file(config: Path, tmp_path: Path) -> None:
    copy = shipped(config, tmp_path)
    without = loads(copy)
    assert without.returncode != 0 and "auth.conf" in without.stderr  # not without it
    with_accounts(tmp_path)
    checked = loads(copy)
    assert checked.returncode == 0, checked.stderr


def test_it_provisions_a_running_bus_and_says_when_it_cannot(
    own_nats: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert own_nats.credentials is not None
    seeds = str(own_nats.credentials.folder)
    assert main([seeds, "--provision", own_nats.url]) == 0  # again: nothing to do
    assert main([seeds, "--provision", "nats://127.0.0.1:1"]) == 1
    said = capsys.readouterr().out
    assert "could not provision nats://127.0.0.1:1" in said and "Traceback" not in said


def test_it_provisions_a_bus_that_speaks_tls_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the servers of infra/nats/cluster-3node run: the admins connect with TLS first,
    trusting NATS_TLS_CA (and with mutual TLS presenting NATS_TLS_CERT, as every client)."""
    tls = BusTls(DevCA(tmp_path / "tls"), verify=True)
    server = NatsServer(
        free_port(), tmp_path / "js", credentials=BusCredentials(tmp_path / "creds"), tls=tls
    ).start()
    try:
        for name, value in tls.env("admin").items():
            monkeypatch.setenv(name, value)
        assert main([str(tmp_path / "creds"), "--provision", server.url, "--replicas", "1"]) == 0
    finally:
        server.stop()
    assert "ready on tls://" in capsys.readouterr().out


def test_it_makes_every_mirror_anew_when_asked(
    own_nats: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the key log was rebuilt: each account's mirror is deleted and made again."""
    assert own_nats.credentials is not None
    seeds = str(own_nats.credentials.folder)
    assert main([seeds, "--provision", own_nats.url, "--remake-mirrors"]) == 0
    said = capsys.readouterr().out.splitlines()
    every = sorted(
        f"{account} {stream} (mirror)" for account in ACCOUNTS for stream in mirrors(account)
    )
    assert sorted(x.removesuffix(": deleted") for x in said if x.endswith(": deleted")) == every
    assert sorted(x.removesuffix(": made") for x in said if x.endswith("(mirror): made")) == every
