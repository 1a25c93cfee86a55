"""`aitbc`: the operator command line. Parses arguments and runs one command over NATS.

Each command group is a module with `register(commands, common)`; a command is an async
handler `(args, send, out) -> exit code`, given the way to reach the services.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

from aitbc_cli import accounts, events, keys, projections, usage
from aitbc_cli.bus import (
    DEFAULT_TIMEOUT,
    BusError,
    Send,
    access_of,
    default_creds,
    default_nats_url,
    sender,
)
from aitbc_cli.replies import CommandRejected
from aitbc_contracts.names import escaped
from aitbc_runtime.bus_access import without_secrets

GROUPS = (accounts, keys, events, projections, usage)


def common_options() -> argparse.ArgumentParser:
    """Options every command accepts after its name too (`aitbc keys list --json ...`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for programs")
    common.add_argument("--nats-url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--creds", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aitbc",
        description="Operate the AITBC API-key services over NATS.",
    )
    parser.add_argument(
        "--nats-url",
        default=default_nats_url(),
        help="NATS server to reach the services through, or a cluster's servers separated by "
        "commas, any of which will do (env NATS_URL, else NATS_PORT on 127.0.0.1, as `just up` "
        f"starts it; default {without_secrets(default_nats_url())})",
    )
    parser.add_argument(
        "--creds",
        default=default_creds(),
        metavar="FILE",
        help="NATS credentials (an nkey seed file) of an operator role: admin, or auditor to "
        "only read (env NATS_CREDS, else DATA_DIR/creds/admin.nk where `just up` made it); "
        "TLS from NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for an answer (default %(default)s)",
    )
    commands = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    common = common_options()
    for group in GROUPS:
        group.register(commands, common)
    return parser


async def dispatch(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    code: int = await args.handler(args, send, out)
    return code


def run(
    argv: Sequence[str] | None = None,
    send: Send | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Parse `argv`, run the command and return its exit code (tests pass a fake `send`)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(argv)
        args.bus = access_of(args)
        args.err = err  # where a command says what it skipped on the way
        send = send or sender(args.bus, wait=args.timeout)
        return asyncio.run(dispatch(args, send, out))
    except CommandRejected as exc:
        err.write(escaped(f"aitbc: {exc.code}: {exc.message}") + "\n")
    except BusError as exc:
        err.write(escaped(f"aitbc: error: {exc}") + "\n")
    return 1


def main() -> int:
    try:
        return run()
    except KeyboardInterrupt:
        return 130
