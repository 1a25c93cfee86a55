"""`aitbc keys ...`: list an account's keys, show one at a point in time, revoke any key."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from aitbc_cli import history
from aitbc_cli.bus import Send
from aitbc_cli.events import instant, key_id
from aitbc_cli.output import as_data, fields, keys_table, print_json, when
from aitbc_cli.replies import expect
from aitbc_contracts.messages import OPERATOR, KeyList, KeyView, ListKeys, RevokeKey


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    keys = commands.add_parser("keys", help="list and revoke API keys")
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

    revoke = sub.add_parser("revoke", parents=[common], help="revoke a key of any account")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.add_argument("--reason", default="", help="recorded in the key event log")
    revoke.set_defaults(handler=revoke_key)


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
    key = expect(await send(command), KeyView)
    if args.json:
        print_json(as_data(key), out)
    else:
        out.write(fields(key_fields(key)) + "\n")
    return 0
