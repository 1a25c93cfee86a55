"""The nats-server configurations of infra/nats as a test machine can load them: copied into a
test's folder with a development CA where a container mounts its certificates, the JetStream
store in that folder, and (`with_accounts`) the accounts file they include beside them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from aitbc_infra.bus_setup import main
from aitbc_infra.dev_ca import DevCA
from aitbc_infra.nats_server import nats_server_binary

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "infra" / "nats").rglob("*.conf"))
CONTAINER_TLS = "/etc/nats/tls"
CONTAINER_STORE = "store_dir: /data"


def shipped(config: Path, folder: Path) -> Path:
    """A copy of `config` in `folder`, its container paths pointing into `folder`."""
    ca = DevCA(folder / "tls", hosts=("nats-1", "nats-2", "nats-3")).provision()
    text = config.read_text().replace(CONTAINER_STORE, f'store_dir: "{folder / "js"}"')
    copy = folder / config.name
    copy.write_text(text.replace(CONTAINER_TLS, str(ca.folder)))
    return copy


def with_accounts(folder: Path) -> None:
    """The accounts file the configurations include, as `aitbc-bus-config` writes it."""
    assert main([str(folder / "creds"), "--conf", str(folder / "auth.conf")]) == 0


def loads(config: Path) -> subprocess.CompletedProcess[str]:
    """nats-server's check of a configuration (`-t`): exit code 0 if it would start."""
    command = [nats_server_binary(), "-t", "-c", str(config)]
    return subprocess.run(command, capture_output=True, text=True)
