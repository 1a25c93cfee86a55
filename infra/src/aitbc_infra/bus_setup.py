"""`aitbc-bus-config`: the bus's credentials and permissions for a nats-server that `just up`
does not start (infra/nats/single.conf, infra/nats/cluster-3node/), as docs/security.md says.

    aitbc-bus-config DIR [--conf FILE]        # each role's nkey seed in DIR (mode 0600, made
                                              # once and kept), and the accounts block that the
                                              # nats-server configuration includes (FILE,
                                              # default DIR/auth.conf)
    aitbc-bus-config DIR --provision URL      # once the servers run: the streams others mirror
                     [--replicas 3]           # (the key log's, the usage stream) and their
                     [--remake-mirrors]       # mirrors in every account that reads them
                                              # (aitbc_infra.bus_streams), as the admins whose
                                              # seeds DIR holds; every stream's and bucket's
                                              # replicas, existing ones' in place; with
                                              # --remake-mirrors, every mirror deleted first and
                                              # made anew (after the key log was rebuilt)
                                              # (URL: one server, or a comma-separated list)

On a bus that speaks TLS, `--provision` takes the settings every client does: NATS_TLS_CA (and
NATS_TLS_CERT, NATS_TLS_KEY for mutual TLS). Give each process only its role's seed
(NATS_CREDS). Running it again keeps the seeds and writes the same file; delete a seed and run
it again to replace it (docs/security.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from aitbc_infra.bus_config import BusCredentials, write_private
from aitbc_infra.bus_streams import drop_mirrors, provision
from aitbc_runtime.bus_access import BusAccess, TlsFields


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="aitbc-bus-config",
        description="Make the NATS roles' credentials and the accounts block nats-server includes.",
    )
    parse.add_argument("dir", type=Path, help="where the roles' nkey seeds are kept (0700)")
    parse.add_argument("--conf", type=Path, help="the file to write [DIR/auth.conf]")
    parse.add_argument(
        "--provision", metavar="URL", help="make the mirrored streams and their mirrors on this bus"
    )
    parse.add_argument(
        "--remake-mirrors",
        action="store_true",
        help="with --provision: delete every mirror first, and make it anew from its source",
    )
    parse.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="every stream's and bucket's replicas, existing ones' too [1; 3 in a 3-node cluster]",
    )
    return parse


def write_accounts(credentials: BusCredentials, conf: Path) -> None:
    """The accounts block, with its users' public keys (no secret in it; 0600 all the same:
    only the server needs to read it)."""
    header = (
        "# Written by aitbc-bus-config from the seeds in "
        f"{credentials.folder}: the roles' public keys and permissions.\n"
        "# Included by the nats-server configuration; write it again after a rotation.\n"
    )
    write_private(conf, header + credentials.accounts())


def admins(
    credentials: BusCredentials, url: str, env: Mapping[str, str] = os.environ
) -> tuple[BusAccess, BusAccess]:
    """The two admins on the bus at `url`, with TLS as every client takes it (NATS_TLS_CA; for
    mutual TLS NATS_TLS_CERT and NATS_TLS_KEY); only their seeds are read, so this runs where
    the seeds' folder holds nothing else."""
    tls = BusAccess.from_env(env)
    fields: TlsFields = {"tls_ca": tls.tls_ca, "tls_cert": tls.tls_cert, "tls_key": tls.tls_key}
    return (
        credentials.access("keylog-admin", url, **fields),
        credentials.access("admin", url, **fields),
    )


def provision_bus(
    credentials: BusCredentials, url: str, replicas: int, remake_mirrors: bool = False
) -> int:
    """The mirrored streams and their mirrors on the bus at `url`, as its admins (the mirrors
    deleted first with `remake_mirrors`); every stream and bucket at `replicas`."""

    async def provisioned() -> list[str]:
        keylog_admin, admin = admins(credentials, url)
        dropped = await drop_mirrors(admin) if remake_mirrors else []
        return dropped + await provision(keylog_admin, admin, replicas)

    try:
        changes = asyncio.run(provisioned())
    except Exception as exc:  # unreadable seeds, unreachable, refused, a stream in the way
        print(f"aitbc-bus-config: could not provision {url}: {exc or type(exc).__name__}")
        return 1
    for change in changes:
        print(change)
    print(
        f"the mirrored streams and their mirrors are ready on {url}, "
        f"every stream at {replicas} replicas"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.provision:
        credentials = BusCredentials(args.dir.resolve())
        return provision_bus(credentials, args.provision, args.replicas, args.remake_mirrors)
    credentials = BusCredentials(args.dir.resolve()).provision()
    conf = args.conf or args.dir / "auth.conf"
    write_accounts(credentials, conf)
    print(f"seeds in {credentials.folder}; accounts block in {conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
