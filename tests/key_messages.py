"""Key event stream messages as the outbox relay publishes them (the event's bytes, chained,
with the position and hash headers), and the forgeries a reader must refuse: for tests that
feed a reader without a stream, or publish on a real one."""

from __future__ import annotations

from dataclasses import dataclass

from msgspec.structs import replace

from aitbc_contracts.chain import GENESIS, link
from aitbc_contracts.events import AnyEvent, encode_event
from aitbc_contracts.subjects import HASH_HEADER, MSG_ID_HEADER, POSITION_HEADER

Message = tuple[bytes, dict[str, str]]  # (data, headers)


def headers(position: int, chain_hash: str, event_id: str = "") -> dict[str, str]:
    found = {POSITION_HEADER: str(position), HASH_HEADER: chain_hash}
    if event_id:
        found[MSG_ID_HEADER] = event_id
    return found


@dataclass
class Chained:
    """A log being written: each event gets the next position and continues the chain. Start
    it where a stream already stands (`position`, `head`) to continue that one."""

    position: int = 0
    head: str = GENESIS

    def message(self, event: AnyEvent, older_than_the_chain: bool = False) -> Message:
        """The next message; `older_than_the_chain`: its event was appended before the chain
        existed (no prev_hash in its bytes), and published since with its chain hash."""
        data = encode_event(replace(event, prev_hash="" if older_than_the_chain else self.head))
        self.position += 1
        self.head = link(self.head, data)
        return data, headers(self.position, self.head, event.event_id)

    def forged_next(self, event: AnyEvent) -> Message:
        """What a forger who read the stream makes: the next position, continuing the chain
        exactly as a genuine event would, but not written to the log (this log stays put)."""
        return Chained(self.position, self.head).message(event)


def with_headers(message: Message, **changes: str) -> Message:
    """The same bytes under other headers, named with underscores for dashes
    (`Aitbc_Position="9"`); an empty value drops the header."""
    data, found = message
    changed = dict(found)
    for name, value in changes.items():
        header = name.replace("_", "-")
        if value:
            changed[header] = value
        else:
            changed.pop(header, None)
    return data, changed
