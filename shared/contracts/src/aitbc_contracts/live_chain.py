"""The hash chain as a reader of the key event stream follows it, message by message: what it
may apply, what it skips, what it refuses, and where it must catch up from a trusted source.

`aitbc_contracts.chain.Verifier` judges a whole log after the fact; `LiveChain` decides on each
message as it comes, with the same rule (`aitbc_contracts.chain.link`) and the same words for
what is wrong (`inserted`, `altered`, `removed`, `reordered`, as `aitbc events verify` names
them). A message is taken when it continues the chain: its position is the last one plus one,
its `prev_hash` (when it has one) is the last hash, and its `Aitbc-Hash` header is
`link(last hash, its bytes)`. Besides, a message is *sealed* when its header is
`link(its own prev_hash, its bytes)`: it is consistent on its own, whoever made it.

- A redelivery of a position already taken, with the hash seen there, is skipped quietly.
- A message that is not sealed and does not continue the chain is refused: never applied,
  and it changes nothing (a `{}`, a wrong position or a wrong hash on a garbled copy).
- A sealed message that does not continue the chain (positions missing before it, another
  history behind it, or a position already taken by another hash: a fork) means this reader
  cannot tell which history is the log's: the verdict is `resync`. The chain anchors at that
  message; the caller resets its views, which ask their trusted sources again, and applies
  nothing of the message (the sources hold every genuine event: the relay publishes only what
  is committed). So a forged message costs a reset, never the genuine events after it: they
  continue the chain from the new anchor, or contradict it and anchor it again.

A hash chain has no key: whoever may publish on the stream can make a sealed event that
continues it. Such an event is applied until the genuine event of its position arrives (a
fork, so a reset). Keeping forgers off the stream is the bus permissions' work; the signed
checkpoints prove what the log was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from aitbc_contracts.chain import GENESIS, Break, link
from aitbc_contracts.events import AnyEvent
from aitbc_contracts.keys import InvalidKeyEvent, read_envelope
from aitbc_contracts.subjects import HASH_HEADER

Kind = Literal["apply", "skip", "refuse", "resync"]
REMEMBERED = 1024  # positions whose hash is kept, to know a redelivery from a fork


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one message. `problem` and `detail` say what is wrong with a refused
    message, or why the reader must resync, in the words of `aitbc events verify`."""

    kind: Kind
    position: int | None = None
    event: AnyEvent | None = None  # set when it may be applied (and for a resync's message)
    problem: str = ""
    detail: str = ""

    def as_break(self, sequence: int | None = None) -> Break:
        """What is wrong, as `aitbc events verify` names it (`aitbc_contracts.chain.describe`)."""
        event_id = "" if self.event is None else self.event.event_id
        return Break(self.problem, self.position, event_id, sequence, self.detail)


def _refuse(problem: str, detail: str, position: int | None = None) -> Verdict:
    return Verdict("refuse", position, None, problem, detail)


@dataclass
class LiveChain:
    """A reader's place in the chain: the last position taken and its hash.

    `position` None: not anchored yet; the first sealed message anchors it and is applied
    (a reader starts from the stream's last message, and its views from their sources).
    `subset`: the reader follows some subjects only (one key, one account), so events are not
    adjacent: each is checked alone (sealed) and positions must only increase. An event written
    before the chain existed (no prev_hash) can only be checked by its place in the chain.
    """

    position: int | None = None
    head: str = GENESIS
    subset: bool = False
    _hashes: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_genesis(cls, subset: bool = False) -> LiveChain:
        """A chain read from its first event (a replay), not from wherever it stands."""
        return cls(position=0, head=GENESIS, subset=subset)

    def take(self, data: bytes, headers: Mapping[str, str] | None) -> Verdict:
        try:
            event, position = read_envelope(data, headers)
        except InvalidKeyEvent as exc:
            return _refuse("inserted", f"a message that is not an event of the log: {exc}")
        recorded = (headers or {}).get(HASH_HEADER, "")
        if not recorded:
            return _refuse("inserted", f"a message without the {HASH_HEADER} header", position)
        last = self.position
        if last is not None and self._continues(position, recorded, event, data):
            return self._take(position, recorded, event)
        if last is not None and position <= last and self._hashes.get(position) == recorded:
            return Verdict("skip", position)  # a redelivery of what was taken
        if not event.prev_hash and position > 1:
            if self.subset and last is not None and position > last:
                return self._take(position, recorded, event)  # alone, only its place shows
            return _refuse(
                "unverifiable",
                "an event without prev_hash (older than the chain) is checked only where it "
                "continues the chain",
                position,
            )
        if recorded != link(event.prev_hash, data):
            return _refuse("altered", "its bytes do not match its hash header", position)
        if last is None or (self.subset and position > last):
            return self._take(position, recorded, event)
        if self.subset:
            detail = f"position {position} is not after {last}, the last one taken"
            return _refuse("reordered", detail, position)
        return self._resync(position, recorded, event, last)

    def _continues(self, position: int, recorded: str, event: AnyEvent, data: bytes) -> bool:
        if self.subset or self.position is None or position != self.position + 1:
            return False
        return event.prev_hash in ("", self.head) and recorded == link(self.head, data)

    def _take(self, position: int, recorded: str, event: AnyEvent) -> Verdict:
        self._remember(position, recorded)
        return Verdict("apply", position, event)

    def _resync(self, position: int, recorded: str, event: AnyEvent, last: int) -> Verdict:
        if position > last + 1:
            missing = f"{last + 1}" if position == last + 2 else f"{last + 1}..{position - 1}"
            problem, detail = "removed", f"position {missing} is missing"
        elif position == last + 1:
            problem, detail = "inserted", "it follows no event this reader has taken"
        elif position in self._hashes:
            problem = "reordered"
            detail = f"position {position} was taken already, by another event: a fork"
        else:
            problem = "reordered"
            detail = f"position {position} comes after {last}, with a hash not taken there"
        self._hashes.clear()
        self._remember(position, recorded)
        return Verdict("resync", position, event, problem, detail)

    def _remember(self, position: int, recorded: str) -> None:
        self.position, self.head = position, recorded
        self._hashes[position] = recorded
        if len(self._hashes) > REMEMBERED:
            del self._hashes[next(iter(self._hashes))]
