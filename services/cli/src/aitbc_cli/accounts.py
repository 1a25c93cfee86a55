"""`aitbc accounts ...`: create accounts (with their master key), change plans, and give an
account a new master key when its owner lost the old one or it was revoked."""

from __future__ import annotations

import argparse
from typing import Any, TextIO, get_args

from aitbc_cli.bus import Send
from aitbc_cli.output import as_data, fields, print_json, when
from aitbc_cli.replies import expect
from aitbc_contracts.events import Plan
from aitbc_contracts.keyformat import generate_key, hash_key, hint
from aitbc_contracts.messages import (
    AccountView,
    CreateAccount,
    KeyView,
    ReplaceMasterKey,
    SetPlan,
)

PLANS: tuple[str, ...] = get_args(Plan)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    accounts = commands.add_parser(
        "accounts", help="create accounts, change their plan, give one a new master key"
    )
    sub = accounts.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = sub.add_parser(
        "create", parents=[common], help="create an account and print its master key (once)"
    )
    create.add_argument("--plan", required=True, choices=PLANS, help="the account's plan")
    create.add_argument("--name", default="", help="a name for people to recognise it")
    create.set_defaults(handler=create_account)

    set_plan = sub.add_parser("set-plan", parents=[common], help="change an account's plan")
    set_plan.add_argument("account_id", metavar="ACCOUNT_ID")
    set_plan.add_argument("plan", metavar="PLAN", choices=PLANS, help=" | ".join(PLANS))
    set_plan.set_defaults(handler=set_account_plan)

    recover = sub.add_parser(
        "new-master-key",
        parents=[common],
        help="account recovery: a new master key (printed once); the old one is revoked",
    )
    recover.add_argument("account_id", metavar="ACCOUNT_ID")
    recover.add_argument("--reason", default="", help="recorded in the old key's revocation")
    recover.set_defaults(handler=new_master_key)


def account_fields(account: AccountView) -> list[tuple[str, str]]:
    return [
        ("account id", account.account_id),
        ("name", account.name or "-"),
        ("plan", account.plan),
        ("master key id", account.master_key_id),
        ("created", when(account.created_at)),
    ]


async def create_account(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    # The key is made here and only its hash leaves this process: the plaintext is shown
    # to the operator once and exists nowhere else.
    master_key = generate_key()
    reply = await send(
        CreateAccount(
            master_key_hash=hash_key(master_key),
            master_key_hint=hint(master_key),
            name=args.name,
            plan=args.plan,
        )
    )
    account = expect(reply, AccountView)
    if args.json:
        print_json({**as_data(account), "master_key": master_key}, out)
    else:
        out.write(fields([*account_fields(account), ("master key", master_key)]) + "\n")
        out.write("\nKeep the master key now: it is shown only this once.\n")
    return 0


async def set_account_plan(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    account = expect(await send(SetPlan(account_id=args.account_id, plan=args.plan)), AccountView)
    if args.json:
        print_json(as_data(account), out)
    else:
        out.write(fields(account_fields(account)) + "\n")
    return 0


async def new_master_key(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    # Made here like an account's first master key: only its hash leaves this process.
    master_key = generate_key()
    command = ReplaceMasterKey(
        account_id=args.account_id,
        secret_hash=hash_key(master_key),
        hint=hint(master_key),
        reason=args.reason,
    )
    key = expect(await send(command), KeyView)
    if args.json:
        print_json({**as_data(key), "master_key": master_key}, out)
    else:
        shown = [("account id", key.account_id), ("master key id", key.key_id)]
        out.write(fields([*shown, ("master key", master_key)]) + "\n")
        out.write(
            "\nThe account's previous master key is revoked. Give this one to its owner now:"
            " it is shown only this once.\n"
        )
    return 0
