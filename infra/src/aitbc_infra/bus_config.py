"""A bus that trusts no one: the roles' credentials and the nats-server configuration that
requires them (aitbc_infra.bus_roles says who may do what).

`just up` keeps them in its data folder: `creds/<role>.nk` (an nkey seed, mode 0600, made once
and kept), the key event log's checkpoint signing key `creds/checkpoint-key.nk` (0600) with its
public key beside it (`checkpoint-key.pub`: what verifiers trust), and `nats.conf`, written at
every start from the seeds' public keys and the roles' permissions. The tests and benchmarks
run the same configuration on their own servers; a deployment includes the same `accounts`
block (`aitbc-bus-config`, aitbc_infra.bus_setup). An anonymous connection is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Unpack

import nkeys

from aitbc_infra.bus_accounts import account_links
from aitbc_infra.bus_roles import ROLES, Role
from aitbc_infra.bus_stores import ACCOUNTS, DESTRUCTIVE
from aitbc_runtime.bus_access import BusAccess, TlsFields, inbox_prefix, public_key_of_seed
from aitbc_runtime.checkpoint_keys import new_signing_seed, public_key_of

if TYPE_CHECKING:  # bus_tls builds on this module (write_private)
    from aitbc_infra.bus_tls import BusTls


def write_private(path: Path, text: str) -> None:
    """Create `path` with mode 0600 from the start (never readable by others, not even for a
    moment), replacing whatever was there."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    temporary.replace(path)


def new_user_seed() -> str:
    return str(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode())


def _strings(values: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


def user_entry(role: Role, public_key: str) -> str:
    """The role's user in nats-server's configuration language."""
    if role.admin:
        return f"{{ nkey: {public_key} }}"
    inbox = f"{inbox_prefix(public_key)}.>"
    publish = f"publish: {{ allow: {_strings(role.publish)}, deny: {_strings(DESTRUCTIVE)} }}"
    subscribe = f"subscribe: {{ allow: {_strings((*role.subscribe, inbox))} }}"
    responses = ", allow_responses: true" if role.responds else ""
    return f"{{ nkey: {public_key}, permissions: {{ {publish}, {subscribe}{responses} }} }}"


@dataclass(frozen=True)
class BusCredentials:
    """Every role's nkey seed, in `folder` (made once, kept across restarts)."""

    folder: Path

    def file(self, role: str) -> Path:
        if role not in ROLES:
            raise KeyError(f"no such bus role: {role!r} (one of {', '.join(ROLES)})")
        return self.folder / f"{role}.nk"

    @property
    def checkpoint_key(self) -> Path:
        """The keys service's checkpoint signing key (an operator nkey seed, 0600)."""
        return self.folder / "checkpoint-key.nk"

    @property
    def checkpoint_public_key(self) -> Path:
        """Its public key: what `aitbc events verify` trusts checkpoints with."""
        return self.folder / "checkpoint-key.pub"

    def provision(self) -> BusCredentials:
        """Make the seeds that are missing; existing ones are kept (running clients use them)."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)
        for role in ROLES:
            if not self.file(role).exists():
                write_private(self.file(role), new_user_seed() + "\n")
        if not self.checkpoint_key.exists():  # kept: checkpoints already signed name its key
            write_private(self.checkpoint_key, new_signing_seed() + "\n")
        public = public_key_of(self.checkpoint_key.read_text().strip()) + "\n"
        if not self.checkpoint_public_key.exists() or (
            self.checkpoint_public_key.read_text() != public  # the key was replaced: rotated
        ):
            self.checkpoint_public_key.write_text(public)
        return self

    def public_key(self, role: str) -> str:
        return public_key_of_seed(self.file(role).read_text())

    def access(self, role: str, url: str, **tls: Unpack[TlsFields]) -> BusAccess:
        """How a process of `role` reaches the bus at `url` (`tls`: BusAccess's TLS fields)."""
        return BusAccess(url=url, creds=str(self.file(role)), **tls)

    def accounts(self) -> str:
        """The `accounts` block of the server configuration: each account's users (the roles),
        and what the accounts share (aitbc_infra.bus_accounts: services, mirrors, the admin's)."""
        blocks = []
        for account in ACCOUNTS:
            users = "\n".join(
                f"      {user_entry(role, self.public_key(role.name))}"
                for role in ROLES.values()
                if role.account == account
            )
            head = f"  {account} {{\n    jetstream: enabled\n"
            blocks.append(f"{head}    users = [\n{users}\n    ]\n{account_links(account)}  }}")
        return "accounts {\n" + "\n".join(blocks) + "\n}\n"


def server_config(
    port: int, store_dir: Path, credentials: BusCredentials | None, tls: BusTls | None = None
) -> str:
    """A single nats-server with JetStream on 127.0.0.1:`port`, requiring the roles'
    credentials (None: open to anyone, for a developer's own experiments only), and with
    `tls` speaking TLS only."""
    text = f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: {json.dumps(str(store_dir))} }}\n"
    if tls is not None:
        text += tls.server_block()
    if credentials is not None:
        text += credentials.accounts()
    return text


CLUSTER_NAME = "aitbc"


def route_url(port: int) -> str:
    """Where a node on loopback takes routes from the others."""
    return f"nats-route://127.0.0.1:{port}"


def node_config(
    name: str,
    port: int,
    route_port: int,
    routes: Iterable[str],
    credentials: BusCredentials,
    tls: BusTls | None = None,
    store_dir: Path | None = None,
    route_tls: bool = True,
) -> str:
    """One node of a cluster on loopback, as infra/nats/cluster-3node/node-N.conf has it:
    clients on `port`, the other nodes on `route_port`, reaching out to `routes` (the route to
    itself is ignored), JetStream in `store_dir` (None: none), the roles' accounts, and with
    `tls` TLS on the client port and (`route_tls`) on the routes, each node checking the
    others' certificates."""
    route_block = tls.route_block() if tls is not None and route_tls else ""
    cluster = (
        f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{route_port}\n"
        f"  routes: [{', '.join(routes)}]\n  connect_retries: 30\n{route_block}}}\n"
    )
    head = f"server_name: {name}\nlisten: 127.0.0.1:{port}\n"
    if store_dir is not None:
        head += f"jetstream {{ store_dir: {json.dumps(str(store_dir))} }}\n"
    server_tls = tls.server_block() if tls is not None else ""
    return head + server_tls + credentials.accounts() + cluster
