"""`aitbc keys show KEY_ID [--at T]`: a key as it was at a point in time, and who made it so.

It folds the key's events, and its account's for the plan, read from the JetStream stream (the
same log `events replay` reads), up to T. The fold is an audit view, not the keys service's
domain state: it keeps who acted and when, which the service has no need for.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TextIO

from aitbc_cli import stream
from aitbc_cli.bus import Send
from aitbc_cli.output import fields, print_json, when
from aitbc_cli.replies import CommandRejected
from aitbc_contracts.events import (
    AccountCreated,
    AnyEvent,
    KeyCreated,
    KeyRegenerated,
    KeyRevoked,
    PlanChanged,
    decode_event,
)
from aitbc_contracts.messages import Code


@dataclass(frozen=True)
class KeyAt:
    key_id: str
    account_id: str
    name: str
    kind: str
    hint: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    rate_limit: int | None = None
    plan: str = "-"
    revoked_at: datetime | None = None
    revoked_by: str = ""
    reason: str = ""
    regenerated_at: datetime | None = None
    regenerated_by: str = ""
    regenerations: int = 0
    previous_valid_until: datetime | None = None
    events: int = 0

    def status(self, at: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= at:
            return "expired"
        return "active"


def fold(history: list[AnyEvent], at: datetime) -> KeyAt | None:
    """The key after its events (and its account's) that occurred at or before `at`."""
    key: KeyAt | None = None
    plan = "-"
    for event in history:
        if event.occurred_at > at:
            continue
        match event:
            case AccountCreated():
                plan = event.plan
            case PlanChanged():
                plan = event.plan
            case KeyCreated():
                key = KeyAt(
                    key_id=event.key_id,
                    account_id=event.account_id,
                    name=event.name,
                    kind=event.kind,
                    hint=event.hint,
                    created_at=event.occurred_at,
                    created_by=event.actor,
                    expires_at=event.expires_at,
                    rate_limit=event.rate_limit,
                )
            case KeyRevoked() if key is not None:
                key = replace(
                    key, revoked_at=event.occurred_at, revoked_by=event.actor, reason=event.reason
                )
            case KeyRegenerated() if key is not None:
                key = replace(
                    key,
                    hint=event.hint,
                    regenerated_at=event.occurred_at,
                    regenerated_by=event.actor,
                    regenerations=key.regenerations + 1,
                    previous_valid_until=event.previous_valid_until,
                )
        if key is not None and event.stream_id == key.key_id:
            key = replace(key, events=key.events + 1)
    return None if key is None else replace(key, plan=plan)


async def read_history(nats_url: str, wait: float, key_id: str) -> list[AnyEvent]:
    """The key's events, then its account's: each stream in its own order."""
    found: list[AnyEvent] = []

    def sink(_seq: int, _subject: str, data: bytes, _headers: dict[str, str] | None) -> None:
        found.append(decode_event(data))

    nc = await stream.connect(nats_url, wait)
    try:
        await stream.read(nc, stream.event_filter(key_id=key_id), sink)
        if not found:
            return []
        account_id = found[0].account_id
        key_events = list(found)
        found.clear()
        await stream.read(nc, stream.event_filter(account_id, account_id), sink)
    finally:
        await nc.close()
    # Account events first: the plan at T is the same whichever way they interleave.
    return found + key_events


def _by(at: datetime | None, actor: str) -> str:
    return "-" if at is None else f"{when(at)} by {actor or '-'}"


async def show_key(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    at: datetime = args.at or datetime.now(UTC)
    key = fold(await read_history(args.nats_url, args.timeout, args.key_id), at)
    if key is None:
        raise CommandRejected(Code.NOT_FOUND, f"key {args.key_id} did not exist at {when(at)}")
    if args.json:
        print_json({"at": at, "status": key.status(at), **asdict(key)}, out)
        return 0
    in_grace = key.previous_valid_until is not None and key.previous_valid_until > at
    regenerated = _by(key.regenerated_at, key.regenerated_by)
    pairs = [
        ("key id", key.key_id),
        ("account id", key.account_id),
        ("as of", when(at)),
        ("status", key.status(at)),
        ("plan", key.plan),
        ("name", key.name),
        ("kind", key.kind),
        ("hint", key.hint + "..."),
        ("rate limit", "-" if key.rate_limit is None else f"{key.rate_limit}/min"),
        ("expires", when(key.expires_at)),
        ("created", _by(key.created_at, key.created_by)),
        ("revoked", _by(key.revoked_at, key.revoked_by)),
        ("reason", key.reason or "-"),
        ("regenerated", f"{regenerated} ({key.regenerations}x)" if key.regenerations else "-"),
        ("old secret valid until", when(key.previous_valid_until) if in_grace else "-"),
        ("events", str(key.events)),
    ]
    out.write(fields(pairs) + "\n")
    return 0
