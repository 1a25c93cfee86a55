"""`aitbc events ...`: replay the key event log from JetStream, verify its hash chain.

Replay reads the stream, not the keys service's database: it is what every edge and analytics
consumer saw. jsonl prints each event exactly as published (the documented event schema, see
docs/asyncapi.json), one per line, so it can be piped into other tools. What it reads is checked
as the live readers check it (aitbc_cli.checked): a message that is not an event of the log is
skipped and named on stderr, and a break in the chain makes it exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from aitbc_cli import stream, verify
from aitbc_cli.bus import Send
from aitbc_cli.checked import CheckedRead
from aitbc_cli.output import json_safe, table, when
from aitbc_contracts.events import AnyEvent
from aitbc_contracts.keyformat import is_account_id, is_key_id
from aitbc_contracts.subjects import KEY_EVENTS_SUBJECTS
from aitbc_runtime import redaction

COLUMNS = ("TIME", "TYPE", "STREAM", "ACCOUNT", "ACTOR", "REQUEST ID")


def instant(value: str) -> datetime:
    """An ISO 8601 time for argparse: `2026-01-02T03:04:05Z`, or a date; naive means UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def positive(value: str) -> int:
    """A whole number from 1 for argparse (a count, a limit)."""
    if not value.isdecimal() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"not a whole number from 1: {value!r}")
    return int(value)


def account_id(value: str) -> str:
    if not is_account_id(value):  # ids become subject tokens: no wildcards may slip in
        raise argparse.ArgumentTypeError(f"not an account id: {value!r}")
    return value


def key_id(value: str) -> str:
    if not is_key_id(value):
        raise argparse.ArgumentTypeError(f"not a key id: {value!r}")
    return value


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    events = commands.add_parser("events", help="replay and verify the key event log")
    sub = events.add_subparsers(dest="action", metavar="ACTION", required=True)

    replay = sub.add_parser(
        "replay", parents=[common], help="print the key events from the JetStream stream"
    )
    replay.add_argument("--account", type=account_id, metavar="ACCOUNT_ID")
    replay.add_argument("--key", type=key_id, metavar="KEY_ID")
    replay.add_argument("--since", type=instant, metavar="TIME", help="occurred at or after")
    replay.add_argument("--until", type=instant, metavar="TIME", help="occurred at or before")
    replay.add_argument(
        "--format",
        choices=("jsonl", "table"),
        help="jsonl: each event as published, one per line (the default with --json); table",
    )
    replay.set_defaults(handler=replay_events)

    check = sub.add_parser(
        "verify",
        parents=[common],
        help="check the hash chain in the event store and the stream, and the signed "
        "checkpoints; exit 1 if broken",
    )
    check.add_argument(
        "--database-url",
        default=verify.default_database_url(),
        # The default is shown without its password: --help is read over shoulders and in CI logs
        help="the keys service's database (env DATABASE_URL, else keys.db in DATA_DIR; "
        f"default {redaction.without_secrets(verify.default_database_url())})",
    )
    check.add_argument(
        "--checkpoint-key",
        action="append",
        metavar="KEY_OR_FILE",
        help="the public key the checkpoints must be signed with (O..., or a file holding it); "
        "again for each older key after a rotation (env KEYS_CHECKPOINT_PUBLIC_KEY, else "
        "checkpoint-key.pub in DATA_DIR/creds where `just up` made it)",
    )
    check.set_defaults(handler=verify.verify_log)


async def replay_events(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    fmt = args.format or ("jsonl" if args.json else "table")
    since: datetime | None = args.since
    until: datetime | None = args.until
    rows: list[list[str]] = []
    subset = bool(args.account or args.key)
    terminal = out.isatty()  # a person reads it: an old event's name must not act on the screen
    checked = CheckedRead(args.err, subset=subset)
    # The whole stream, whatever the subject: a foreign message anywhere is named too.
    subjects = stream.event_filter(args.account, args.key) if subset else KEY_EVENTS_SUBJECTS

    def sink(sequence: int, _subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        event = checked.take(sequence, data, headers)
        if event is None or (since is not None and event.occurred_at < since):
            return
        if until is not None and event.occurred_at > until:
            return
        if fmt == "jsonl":  # exactly as published; to a terminal, with unsafe characters escaped
            out.write((json_safe(data.decode()) if terminal else data.decode()) + "\n")
        else:
            cells = [when(event.occurred_at), _type(event), event.stream_id, event.account_id]
            rows.append([*cells, event.actor or "-", event.request_id or "-"])

    nc = await stream.connect(args.bus, args.timeout)
    try:
        await stream.read(nc, subjects, sink)
    except BrokenPipeError:
        # `aitbc events replay | head`: the reader has all it wants. Point stdout at nothing,
        # or Python's own flush at exit would complain about the closed pipe.
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        await nc.close()
    if fmt == "table":
        out.write((table(COLUMNS, rows) if rows else "no events") + "\n")
    return checked.finish()


def _type(event: AnyEvent) -> str:
    """The event's type as published (its tag)."""
    return str(type(event).__struct_config__.tag)
