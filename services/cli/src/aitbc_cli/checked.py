"""A read of the key event stream checked as it goes, for `events replay` and `keys show`: each
message through the live readers' own verification (aitbc_contracts.live_chain), from the
first event of the log. A whole-stream read checks the chain itself; a read of some subjects
(one key, one account) can check each event alone (its hash header against its bytes and
prev_hash) and that positions only increase: `aitbc events verify` checks the whole chain.

A message that is not an event of the log is skipped, and said so on stderr in the words of
`aitbc events verify`; a break in the chain is said so too, and the read goes on from there
(the command then exits 1: what it printed around the break cannot be trusted).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from aitbc_contracts.chain import describe
from aitbc_contracts.events import AnyEvent
from aitbc_contracts.live_chain import LiveChain


class CheckedRead:
    def __init__(self, err: TextIO, subset: bool) -> None:
        self.chain = LiveChain.from_genesis(subset=subset)
        self.err = err
        self.skipped = 0
        self.breaks = 0

    def read_again(self) -> None:
        """A second read (other subjects), from the first event of the log again."""
        self.chain = LiveChain.from_genesis(subset=self.chain.subset)

    def take(
        self, sequence: int, data: bytes, headers: Mapping[str, str] | None
    ) -> AnyEvent | None:
        """The event of this message when it may be used; None when it is skipped."""
        verdict = self.chain.take(data, headers)
        if verdict.kind == "apply":
            return verdict.event
        if verdict.kind == "skip":
            return None  # the same event again: it was used once
        found = describe(verdict.as_break(sequence))
        if verdict.kind == "refuse":
            self.skipped += 1
            self.err.write(f"aitbc: skipped a message that is not an event of the log: {found}\n")
            return None
        self.breaks += 1
        self.err.write(f"aitbc: the key event chain breaks: {found}; read on from there\n")
        return verdict.event

    def finish(self) -> int:
        """The exit code: 1 when the chain broke; a summary on stderr of what was left out."""
        if self.skipped or self.breaks:
            self.err.write(
                f"aitbc: {self.skipped} message(s) skipped, {self.breaks} break(s) in the chain; "
                "`aitbc events verify` checks the whole log\n"
            )
        return 1 if self.breaks else 0
