"""`aitbc keys ...`: list an account's keys, show one at a point in time, create a key (with
its restrictions), restrict one, revoke any key."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from aitbc_cli import history
from aitbc_cli.bus import Send
from aitbc_cli.events import instant, key_id, positive
from aitbc_cli.output import as_data, fields, keys_table, print_json, restriction_fields, when
from aitbc_cli.replies import expect
from aitbc_contracts.keyformat import generate_key, hash_key, hint
from aitbc_contracts.messages import (
    OPERATOR,
    CreateKey,
    KeyList,
    KeyView,
    ListKeys,
    RestrictKey,
    RevokeKey,
)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    keys = commands.add_parser("keys", help="list, create, restrict and revoke API keys")
    sub = keys.add_subparsers(dest="action", metavar="ACTION", required=True)

    list_ = sub.add_parser("list", parents=[common], help="an account's keys, as a table")
    list_.add_argument("--account", required=True, metavar="ACCOUNT_ID")
    list_.set_defaults(handler=list_keys)

    show = sub.add_parser(
        "show", parents=[common], help="a key's state at a time, and who changed it (the log)"
    )
    show.add_argument("key_id", metavar="KEY_ID", type=key_id)
    show.add_argument("--at", type=instant, metavar="TIME", help="ISO 8601; default: now")
    show.set_defaults(handler=history.show_key)

    create = sub.add_parser(
        "create", parents=[common], help="create a standard key and print it (once)"
    )
    create.add_argument("--account", required=True, metavar="ACCOUNT_ID")
    create.add_argument("--name", required=True, help="a name for people to recognise it")
    create.add_argument("--expires", type=instant, metavar="TIME", help="ISO 8601")
    create.add_argument(
        "--rate-limit", type=positive, metavar="N", help="requests a minute, below the plan's"
    )
    _restriction_arguments(create)
    create.set_defaults(handler=create_key)

    restrict = sub.add_parser(
        "restrict",
        parents=[common],
        help="change a standard key's scopes, allowed IPs or shadow mode (what is given)",
    )
    restrict.add_argument("key_id", metavar="KEY_ID", type=key_id)
    _restriction_arguments(restrict)
    restrict.add_argument("--no-scopes", action="store_true", help="remove its scopes")
    restrict.add_argument("--any-ip", action="store_true", help="remove its allow-list")
    restrict.set_defaults(handler=restrict_key)

    revoke = sub.add_parser("revoke", parents=[common], help="revoke a key of any account")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.add_argument("--reason", default="", help="recorded in the key event log")
    revoke.set_defaults(handler=revoke_key)


def _restriction_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="what it may call, e.g. jobs:read; again for each (none: everything)",
    )
    parser.add_argument(
        "--allow-ip",
        action="append",
        metavar="CIDR",
        help="a network its requests may come from; again for each (none: anywhere)",
    )
    parser.add_argument(
        "--shadow",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="its limits counted and reported, never enforced",
    )


def key_fields(key: KeyView) -> list[tuple[str, str]]:
    return [
        ("key id", key.key_id),
        ("account id", key.account_id),
        ("name", key.name or "-"),
        ("kind", key.kind),
        ("status", key.status),
        ("hint", key.hint + "..."),
        ("created", when(key.created_at)),
        ("expires", when(key.expires_at)),
        ("revoked", when(key.revoked_at)),
        *restriction_fields(key.scopes, key.allowed_ips, key.shadow),
    ]


async def list_keys(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    listing = expect(await send(ListKeys(account_id=args.account)), KeyList)
    if args.json:
        print_json({"keys": [as_data(key) for key in listing.keys]}, out)
    else:
        out.write(keys_table(listing.keys) + "\n")
    return 0


async def revoke_key(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    command = RevokeKey(account_id=None, key_id=args.key_id, reason=args.reason, actor=OPERATOR)
    return _shown(expect(await send(command), KeyView), args, out)


async def create_key(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    # Made here like a master key: only its hash leaves this process.
    secret = generate_key()
    command = CreateKey(
        account_id=args.account,
        name=args.name,
        secret_hash=hash_key(secret),
        hint=hint(secret),
        expires_at=args.expires,
        rate_limit=args.rate_limit,
        scopes=tuple(args.scope or ()),
        allowed_ips=tuple(args.allow_ip or ()),
        shadow=bool(args.shadow),
        actor=OPERATOR,
    )
    key = expect(await send(command), KeyView)
    if args.json:
        print_json({**as_data(key), "key": secret}, out)
    else:
        out.write(fields([*key_fields(key), ("key", secret)]) + "\n")
        out.write("\nGive the key to its owner now: it is shown only this once.\n")
    return 0


async def restrict_key(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    command = RestrictKey(
        account_id=None,
        key_id=args.key_id,
        scopes=() if args.no_scopes else (tuple(args.scope) if args.scope else None),
        allowed_ips=() if args.any_ip else (tuple(args.allow_ip) if args.allow_ip else None),
        shadow=args.shadow,
        actor=OPERATOR,
    )
    return _shown(expect(await send(command), KeyView), args, out)


def _shown(key: KeyView, args: argparse.Namespace, out: TextIO) -> int:
    """A key as a command left it: as JSON with --json, else its fields."""
    if args.json:
        print_json(as_data(key), out)
    else:
        out.write(fields(key_fields(key)) + "\n")
    return 0
