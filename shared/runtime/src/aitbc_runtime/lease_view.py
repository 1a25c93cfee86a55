"""The lease bucket as one process has seen it (aitbc_runtime.ownership): its members, with what
each may hold, and each share's holder; and where a share belongs among the live members."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from aitbc_contracts.ownership import LeaseMember, LeaseShare

log = logging.getLogger("aitbc.ownership")

_share = msgspec.json.Decoder(LeaseShare).decode
_member = msgspec.json.Decoder(LeaseMember).decode

Live = list[tuple[str, frozenset[str] | None]]  # live members, with what each may hold


@dataclass
class Seen:
    revision: int
    at: float  # this process's monotonic clock when the revision was first seen
    owner: str | None = None  # a share's owner; None for a member, or a free share
    # A member's heartbeat seen to move while this process watched (not only found there
    # when it joined: a killed process leaves its key behind, and it must not be given shares)
    moved: bool = True
    shares: frozenset[str] | None = None  # a member's: what it may hold; None: every share


def shares_of(entry: KeyValue.Entry) -> frozenset[str] | None:
    try:
        shares = _member(entry.value or b"").shares
    except msgspec.MsgspecError:  # an older or foreign value: as if it could hold any
        return None
    return None if shares is None else frozenset(shares)


def rendezvous(name: str, members: Sequence[str]) -> str:
    """The member a share belongs with: the same answer from the same members everywhere,
    and when one member goes, only its shares move."""
    return max(members, key=lambda m: hashlib.blake2b(f"{name}/{m}".encode()).digest())


class LeaseView:
    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)  # the shares this process competes for
        self.members: dict[str, Seen] = {}
        self.shares: dict[str, Seen] = {}
        self.changed = asyncio.Event()  # set when a share's entry changed: balance again

    def note(self, entry: KeyValue.Entry, now: float, moved: bool = True) -> None:
        """Takes in an entry of the bucket (seen at `now`; `moved`: not found on joining)."""
        kind, _, name = entry.key.partition(".")
        gone = entry.operation in (KV_DEL, KV_PURGE) or not entry.value
        revision = entry.revision or 0
        if kind == "member":
            known = self.members.get(name)
            if known is not None and known.revision >= revision:
                return  # nothing new, or the watch lags behind a read of the key
            if gone:
                self.members.pop(name, None)
            else:
                self.members[name] = Seen(revision, now, moved=moved, shares=shares_of(entry))
        elif kind == "share" and name in self.names:
            if (known := self.shares.get(name)) is not None and known.revision >= revision:
                return  # the watch lags behind what this process wrote itself
            owner = None
            if entry.value and not gone:
                try:
                    owner = _share(entry.value).owner
                except msgspec.MsgspecError:
                    log.warning("share %s has a malformed value; taken as free", name)
            self.shares[name] = Seen(revision, now, owner)
            self.changed.set()


def home(name: str, live: Live) -> str | None:
    """Where the share belongs: among the live members that may hold it."""
    able = [member for member, shares in live if shares is None or name in shares]
    return rendezvous(name, able) if able else None
