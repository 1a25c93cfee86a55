"""`aitbc-bus-config`: the credentials and the accounts file for a nats-server that `just up`
does not start, which every configuration in infra/nats/ includes; and the key log's streams
made on a running bus."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from aitbc_infra.bus_roles import ROLES
from aitbc_infra.bus_setup import main
from aitbc_infra.nats_server import NatsServer, nats_server_binary

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "infra" / "nats").rglob("*.conf"))


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
    copy = tmp_path / config.name
    shutil.copy(config, copy)
    test = [nats_server_binary(), "-t", "-c", str(copy)]
    assert subprocess.run(test, capture_output=True).returncode != 0  # not without it
    assert main([str(tmp_path / "creds"), "--conf", str(tmp_path / "auth.conf")]) == 0
    checked = subprocess.run(test, capture_output=True, text=True)
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
