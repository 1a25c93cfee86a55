"""The bus as the tests reach it: every part of the system with its own role's credentials, as
`just up` gives them (aitbc_infra.bus_roles), on a test's secured nats-server."""

from __future__ import annotations

from typing import Any

from aitbc_infra.nats_server import NatsServer
from aitbc_keys.settings import Settings as KeysSettings
from aitbc_runtime.bus_access import BusAccess


def keys_settings(server: NatsServer, **settings: Any) -> KeysSettings:
    """The keys service's settings: it answers as `keys` and publishes its events as
    `keys-writer`."""
    return KeysSettings(
        nats=server.access("keys"), nats_writer=server.access("keys-writer"), **settings
    )


def cli_options(access: BusAccess) -> list[str]:
    """The `aitbc` command's options that reach the bus as `access` says."""
    return ["--nats-url", access.url, "--creds", access.creds]
