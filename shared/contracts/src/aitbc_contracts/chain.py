"""The key event log's hash chain: it makes an altered, removed, reordered or inserted event
visible, in the event store and in the JetStream stream alike.

The rule: `hash(n) = sha256(hash(n - 1) as ASCII hex + the bytes of event n)`, `hash(0) = ""`,
where n is the event's global position. The bytes are the canonical encoding: the msgspec JSON
the event store writes once when it appends (the "type" tag first, then the fields in
declaration order, no spaces, RFC 3339 times), stored verbatim and published verbatim, never
re-encoded. Event n carries hash(n - 1) in its `prev_hash` field; the store keeps hash(n) in
its `chain_hash` column and the stream message carries it in the `Aitbc-Hash` header. The
previous hash is hashed in even though the body carries it, so that events appended before
the chain existed (`prev_hash` empty) are chained too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import msgspec

GENESIS = ""  # the hash before the first event


def link(prev_hash: str, data: bytes) -> str:
    """The chain hash of an event whose canonical bytes are `data`, after `prev_hash`."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(data)
    return digest.hexdigest()


class _Linked(msgspec.Struct):
    """The two fields of any event the verifier reads (msgspec skips the rest)."""

    event_id: str = ""
    prev_hash: str = ""


_linked = msgspec.json.Decoder(_Linked).decode


@dataclass(frozen=True)
class Entry:
    """One event as a witness holds it: its position, bytes and the hash recorded beside it."""

    position: int | None  # None: a message that claims no position (not one of ours)
    data: bytes
    recorded_hash: str | None = None  # the store's column, or the stream's header; None: absent
    sequence: int | None = None  # the stream sequence, for stream entries


@dataclass(frozen=True)
class Break:
    """The first place where a log stops being the chain it claims to be."""

    problem: str  # "altered" | "removed" | "reordered" | "inserted"
    position: int | None
    event_id: str  # "" when the event is not there to name
    sequence: int | None
    detail: str


def describe(found: Break) -> str:
    """A break for people, as `aitbc events verify` and the key event readers name it; on one
    line, escaped, as a forged message chooses its event id (and a decoder quotes its bytes)."""
    where = [f"position {found.position}"] if found.position is not None else []
    if found.sequence is not None:
        where.append(f"stream sequence {found.sequence}")
    if found.event_id:
        where.append(f"event {found.event_id}")
    place = f" at {', '.join(where)}" if where else ""
    text = f"{found.problem.upper()}{place}: {found.detail}"
    return text.encode("unicode_escape").decode("ascii")


@dataclass
class Verifier:
    """Checks a log fed to it in order; remembers each position's hash to compare witnesses."""

    head: str = GENESIS
    position: int = 0  # the last position seen
    sequence: int | None = None  # the last stream sequence seen
    count: int = 0
    first_break: Break | None = None
    truncated: bool = False  # a stream whose tail was removed: it does not merely lag
    hashes: dict[int, str] = field(default_factory=dict)
    event_ids: dict[int, str] = field(default_factory=dict)
    _seen: dict[str, int] = field(default_factory=dict)  # hash -> position, to spot reordering

    def add(self, entry: Entry) -> None:
        self.count += 1
        try:
            linked = _linked(entry.data)
        except msgspec.DecodeError:
            linked = _Linked()
        computed = link(self.head, entry.data)
        if self.first_break is None:
            self.first_break = self._check(entry, linked, computed)
        if entry.position is not None:
            self.position = max(self.position, entry.position)
            self.hashes.setdefault(entry.position, computed)
            self.event_ids.setdefault(entry.position, linked.event_id)
        self._seen.setdefault(computed, self.position)
        self.head = computed
        self.sequence = entry.sequence

    def _check(self, entry: Entry, linked: _Linked, computed: str) -> Break | None:
        expected = self.position + 1

        def here(problem: str, detail: str) -> Break:
            return Break(problem, entry.position, linked.event_id, entry.sequence, detail)

        if entry.position is None:
            return here("inserted", "a message that is not an event of the log (no position)")
        if entry.position > expected:
            missing = (
                f"{expected}"
                if entry.position == expected + 1
                else f"{expected}..{entry.position - 1}"
            )
            after = None if self.sequence is None else self.sequence + 1
            return Break("removed", expected, "", after, f"position {missing} is missing")
        if entry.position < expected:
            return here(
                "reordered", f"position {entry.position} appears again after {expected - 1}"
            )
        if linked.prev_hash and linked.prev_hash != self.head:
            if linked.prev_hash in self._seen:
                return here(
                    "reordered",
                    f"it follows position {self._seen[linked.prev_hash]}, not {expected - 1}",
                )
            return here(
                "inserted",
                "it follows no event of this log: inserted, or the event before it was "
                "removed or altered",
            )
        if not linked.event_id:
            return here("altered", "it is not a readable event")
        if entry.recorded_hash is not None and entry.recorded_hash != computed:
            return here("altered", "its content no longer matches its recorded hash")
        return None

    def finish(self, last_sequence: int | None = None) -> None:
        """A stream whose last sequence is past the last message read lost its tail."""
        read = self.sequence or 0
        if last_sequence is None or last_sequence <= read:
            return
        self.truncated = True
        self.first_break = self.first_break or Break(
            "removed",
            self.position + 1,
            "",
            read + 1,
            f"stream sequence {read + 1}..{last_sequence} is missing at the end",
        )


def compare(store: Verifier, stream: Verifier) -> Break | None:
    """The first position where the two witnesses disagree; a stream that lags is no break."""
    for position in range(1, max(store.position, stream.position) + 1):
        ours, theirs = store.hashes.get(position), stream.hashes.get(position)
        if ours == theirs:
            continue
        if theirs is None and position > stream.position and not stream.truncated:
            return None  # the relay has not published it yet
        event_id = store.event_ids.get(position) or stream.event_ids.get(position, "")
        if theirs is None:
            detail = "the store has it, the stream does not"
        elif ours is None:
            detail = "the stream has it, the store does not"
        else:
            detail = "the store and the stream hold different events or histories"
        return Break("differ", position, event_id, None, detail)
    return None
