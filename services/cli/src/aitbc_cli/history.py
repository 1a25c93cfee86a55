"""`aitbc keys show KEY_ID [--at T]`: a key as it was at a point in time, and who made it so.

It reads the key's events, and its account's for the plan, from the JetStream stream (the same
log `events replay` reads), and folds those that occurred up to T with the one fold of the key
events (aitbc_contracts.keys), which keeps who acted and when. The audit view adds only what the
fold has no need for: the account's plan at T beside the key, and how many events made it so.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from aitbc_cli import stream
from aitbc_cli.bus import Send
from aitbc_cli.checked import CheckedRead
from aitbc_cli.output import fields, print_json, restriction_fields, when
from aitbc_cli.replies import CommandRejected
from aitbc_contracts.events import AnyEvent
from aitbc_contracts.keys import AccountState, KeyState, fold
from aitbc_contracts.messages import Code
from aitbc_runtime.bus_access import BusAccess

# What --json shows of the key's state, in this order, the plan between the two groups; never
# its secrets' hashes, nor its version.
_SHOWN_BEFORE_PLAN = (
    "key_id",
    "account_id",
    "name",
    "kind",
    "hint",
    "created_at",
    "created_by",
    "expires_at",
    "rate_limit",
)
_SHOWN_AFTER_PLAN = (
    "revoked_at",
    "revoked_by",
    "reason",
    "regenerated_at",
    "regenerated_by",
    "regenerations",
    "previous_valid_until",
)
# ...and its restrictions, for a key that has any: a key without shows as it always did
_RESTRICTIONS = ("scopes", "allowed_ips", "shadow")


@dataclass(frozen=True)
class KeyAt:
    """A key at a time: its state by the one fold, its account's plan then ("-" if its account
    was not seen), and how many of the key's own events had occurred."""

    key: KeyState
    plan: str
    events: int

    def as_data(self, at: datetime) -> dict[str, Any]:
        key = self.key
        return {
            "at": at,
            "status": key.status(at),
            **{name: getattr(key, name) for name in _SHOWN_BEFORE_PLAN},
            "plan": self.plan,
            **{name: getattr(key, name) for name in _SHOWN_AFTER_PLAN},
            **({name: getattr(key, name) for name in _RESTRICTIONS} if _restricted(key) else {}),
            "events": self.events,
        }


def _restricted(key: KeyState) -> bool:
    return bool(key.scopes or key.allowed_ips or key.shadow)


def key_at(history: Iterable[AnyEvent], at: datetime) -> KeyAt | None:
    """The key of `history` (a key's events and its account's) after those that occurred at or
    before `at`; None if it did not exist yet."""
    streams: dict[str, list[AnyEvent]] = {}
    for event in history:
        if event.occurred_at <= at:
            streams.setdefault(event.stream_id, []).append(event)
    key: KeyState | None = None
    plan = "-"
    events = 0
    for stream_events in streams.values():
        match fold(stream_events):
            case KeyState() as state:
                key, events = state, len(stream_events)
            case AccountState() as account:
                plan = account.plan
    return None if key is None else KeyAt(key, plan, events)


async def read_history(access: BusAccess, wait: float, key_id: str, err: TextIO) -> list[AnyEvent]:
    """The key's events, then its account's: each stream in its own order, each event checked
    alone (aitbc_cli.checked); what is skipped is said on `err`."""
    found: list[AnyEvent] = []
    checked = CheckedRead(err, subset=True)

    def sink(sequence: int, _subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        event = checked.take(sequence, data, headers)
        if event is not None:
            found.append(event)

    nc = await stream.connect(access, wait)
    try:
        await stream.read(nc, stream.event_filter(key_id=key_id), sink)
        if not found:
            checked.finish()
            return []
        account_id = found[0].account_id
        key_events = list(found)
        found.clear()
        checked.read_again()  # another subject: its positions start from the first again
        await stream.read(nc, stream.event_filter(account_id, account_id), sink)
    finally:
        await nc.close()
    checked.finish()
    # Account events first: the plan at T is the same whichever way they interleave.
    return found + key_events


def _by(at: datetime | None, actor: str) -> str:
    return "-" if at is None else f"{when(at)} by {actor or '-'}"


def lines(found: KeyAt, at: datetime) -> list[tuple[str, str]]:
    """The key at `at` for people: one field a line."""
    key = found.key
    regenerated = _by(key.regenerated_at, key.regenerated_by)
    return [
        ("key id", key.key_id),
        ("account id", key.account_id),
        ("as of", when(at)),
        ("status", key.status(at)),
        ("plan", found.plan),
        ("name", key.name),
        ("kind", key.kind),
        ("hint", key.hint + "..."),
        ("rate limit", "-" if key.rate_limit is None else f"{key.rate_limit}/min"),
        ("expires", when(key.expires_at)),
        ("created", _by(key.created_at, key.created_by)),
        ("revoked", _by(key.revoked_at, key.revoked_by)),
        ("reason", key.reason or "-"),
        ("regenerated", f"{regenerated} ({key.regenerations}x)" if key.regenerations else "-"),
        ("old secret valid until", when(key.previous_valid_until) if key.in_grace(at) else "-"),
        *(restriction_fields(key.scopes, key.allowed_ips, key.shadow) if _restricted(key) else []),
        ("events", str(found.events)),
    ]


async def show_key(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    at: datetime = args.at or datetime.now(UTC)
    found = key_at(await read_history(args.bus, args.timeout, args.key_id, args.err), at)
    if found is None:
        raise CommandRejected(Code.NOT_FOUND, f"key {args.key_id} did not exist at {when(at)}")
    if args.json:
        print_json(found.as_data(at), out)
    else:
        out.write(fields(lines(found, at)) + "\n")
    return 0
