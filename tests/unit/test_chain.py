"""The hash chain: what each kind of tampering looks like to a verifier, and what does not."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from aitbc_contracts.chain import GENESIS, Entry, Verifier, compare, link
from aitbc_contracts.events import KeyRevoked, encode_event

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def chained(n: int, legacy: int = 0) -> list[Entry]:
    """n events as the store writes them; the first `legacy` ones predate the chain."""
    entries, head = [], GENESIS
    for position in range(1, n + 1):
        event = KeyRevoked(
            event_id=f"e{position}",
            stream_id="key_1",
            version=position,
            account_id="acc_1",
            occurred_at=T0,
            key_id="key_1",
            prev_hash="" if position <= legacy else head,
        )
        data = encode_event(event)
        head = link(head, data)
        entries.append(Entry(position, data, head, sequence=position))
    return entries


def verified(entries: list[Entry], last_sequence: int | None = None) -> Verifier:
    verifier = Verifier()
    for entry in entries:
        verifier.add(entry)
    verifier.finish(last_sequence)
    return verifier


def first(entries: list[Entry], last_sequence: int | None = None) -> tuple[object, ...] | None:
    found = verified(entries, last_sequence).first_break
    return found and (found.problem, found.position, found.event_id)


def without_recorded_hashes(entries: list[Entry]) -> list[Entry]:
    return [Entry(e.position, e.data, None, e.sequence) for e in entries]


def test_the_link_is_sha256_of_the_previous_hash_then_the_bytes() -> None:
    import hashlib

    assert link("ab", b"{}") == hashlib.sha256(b"ab{}").hexdigest()
    assert link(GENESIS, b"{}") == hashlib.sha256(b"{}").hexdigest()


def test_an_untouched_log_is_intact_and_its_head_is_the_last_hash() -> None:
    log = chained(5)
    verifier = verified(log, last_sequence=5)
    assert verifier.first_break is None and verifier.head == log[-1].recorded_hash
    assert verifier.count == 5 and verifier.position == 5


def test_events_from_before_the_chain_are_chained_by_the_rule_all_the_same() -> None:
    log = chained(5, legacy=3)
    assert first(log) is None
    altered = log[1].data.replace(b'"reason":""', b'"reason":"x"')
    log[1] = Entry(2, altered, log[1].recorded_hash, 2)
    assert first(log) == ("altered", 2, "e2")


def test_an_altered_payload_is_named_by_its_recorded_hash() -> None:
    log = chained(5)
    log[2] = Entry(3, log[2].data.replace(b'"actor":""', b'"actor":"key_x"'), log[2].recorded_hash)
    assert first(log) == ("altered", 3, "e3")


def test_without_recorded_hashes_the_next_event_shows_the_alteration() -> None:
    log = without_recorded_hashes(chained(5))
    log[2] = Entry(3, log[2].data.replace(b'"actor":""', b'"actor":"key_x"'), None, 3)
    assert first(log) == ("inserted", 4, "e4")  # "... or the event before it was altered"


def test_a_removed_event_is_named_by_its_position() -> None:
    log = chained(5)
    del log[2]
    assert first(log) == ("removed", 3, "")
    assert verified(log).first_break.sequence == 3  # type: ignore[union-attr]


def test_a_removed_tail_is_seen_through_the_last_sequence() -> None:
    log = chained(5)
    assert first(log[:4], last_sequence=4) is None
    assert first(log[:4], last_sequence=5) == ("removed", 5, "")


def test_swapped_events_are_out_of_order() -> None:
    log = chained(5)
    swapped = [log[0], log[2], log[1], log[3], log[4]]
    assert first(swapped) == ("removed", 2, "")  # position 3 came where 2 belonged
    renumbered = [log[0], Entry(2, log[2].data, log[2].recorded_hash), log[1]]
    assert first(renumbered)[0] == "inserted"  # type: ignore[index]
    replayed = [*log, Entry(6, log[2].data, None)]
    assert first(replayed) == ("reordered", 6, "e3")


def test_a_foreign_message_is_inserted() -> None:
    log = chained(3)
    assert first([*log, Entry(None, b'{"type":"x"}', None, 4)]) == ("inserted", None, "")
    forged = msgspec.json.encode({"event_id": "e9", "prev_hash": "f" * 64})
    assert first([*log, Entry(4, forged, None, 4)]) == ("inserted", 4, "e9")


def test_witnesses_are_compared_position_by_position() -> None:
    log = chained(6)
    store, stream = verified(log), verified(log[:4], last_sequence=4)
    assert compare(store, stream) is None  # the stream lags: the relay is behind, no harm

    def differ(ours: Verifier, theirs: Verifier) -> tuple[object, ...] | None:
        found = compare(ours, theirs)
        return found and (found.position, found.event_id, found.detail)

    gap = verified([*log[:2], *log[3:]], last_sequence=6)
    assert differ(store, gap) == (3, "e3", "the store has it, the stream does not")
    cut = verified(log[:5], last_sequence=6)  # the tail was deleted, not merely late
    assert differ(store, cut) == (6, "e6", "the store has it, the stream does not")
    assert differ(verified(log[:5]), store) == (6, "e6", "the stream has it, the store does not")
    altered = [*log[:3], Entry(4, log[3].data.replace(b"e4", b"e0"), None), *log[4:]]
    assert differ(store, verified(altered))[:2] == (4, "e4")  # type: ignore[index]
