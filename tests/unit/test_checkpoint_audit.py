"""The audit `aitbc events verify` makes of the signed checkpoints, against the chains of the
store and the stream: an honest log, a consistent rewrite, forgeries, missing checkpoints."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from aitbc_cli.checkpoints import Held, audit, report
from aitbc_contracts import checkpoints as wire
from aitbc_contracts.chain import GENESIS, Entry, Verifier, link
from aitbc_runtime.checkpoint_keys import (
    CheckpointSigner,
    TrustedKey,
    new_signing_seed,
    read_checkpoint,
)

WHEN = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
SIGNER = CheckpointSigner(new_signing_seed())
TRUSTED = TrustedKey(SIGNER.key_id)


def events(n: int, changed: int | None = None) -> list[bytes]:
    """n events' bytes; with `changed`, that position's event is different."""
    return [
        b'{"event_id":"e%d","reason":"%s"}' % (p, b"forged" if p == changed else b"ok")
        for p in range(1, n + 1)
    ]


def chain(data: list[bytes], upto: int | None = None) -> Verifier:
    """The chain of `data`, recomputed (a consistent rewrite recomputes it too)."""
    verifier, head = Verifier(), GENESIS
    for position, body in enumerate(data[:upto], start=1):
        head = link(head, body)
        verifier.add(Entry(position, body, head))
    return verifier


def signed(log: Verifier, number: int, position: int, signer: CheckpointSigner = SIGNER) -> bytes:
    cp = signer.sign(
        number=number, position=position, chain_hash=log.hashes[position], signed_at=WHEN
    )
    return wire.encode(cp)


def both(*checkpoints: bytes) -> list[Held]:
    return [Held(w, n, data) for n, data in enumerate(checkpoints, 1) for w in ("store", "stream")]


def test_an_honest_log_and_its_checkpoints_agree() -> None:
    honest = chain(events(250))
    held = both(signed(honest, 1, 100), signed(honest, 2, 200), signed(honest, 3, 250))
    result = audit(held, [TRUSTED], {"store": honest, "stream": chain(events(250), 230)})
    assert result.problems == [] and result.warnings == []
    assert (result.checkpoints, result.verified) == (3, 3)
    assert result.confirmed == {"store": 250, "stream": 200}  # the stream lags: no problem
    assert report(result)[0].startswith("3 (store 3, stream 3), 3 signed by a trusted key")


def test_a_consistent_rewrite_is_named_by_the_first_checkpoint_it_contradicts() -> None:
    honest = chain(events(250))
    held = both(signed(honest, 1, 100), signed(honest, 2, 200), signed(honest, 3, 250))
    rewritten = chain(events(250, changed=150))
    assert rewritten.first_break is None  # the chains alone see nothing
    result = audit(held, [TRUSTED], {"store": rewritten, "stream": rewritten})
    found = [(p.problem, p.number, p.position, p.witness) for p in result.problems]
    assert found == [
        ("rewritten", 2, 200, "store"),
        ("rewritten", 2, 200, "stream"),
        ("rewritten", 3, 250, "store"),
        ("rewritten", 3, 250, "stream"),
    ]
    assert "positions 101..200 were rewritten" in result.problems[0].detail
    assert result.confirmed == {"store": 100, "stream": 100}
    said = report(result)
    assert said[1].startswith("  REWRITTEN at checkpoint 2, position 200 (store): it signed")
    assert said[2].startswith("  REWRITTEN at checkpoint 2, position 200 (stream)")
    assert said[3:] == [
        "  ... and 1 later checkpoint(s) rewritten (store)",
        "  ... and 1 later checkpoint(s) rewritten (stream)",
    ]


def test_forged_unreadable_and_differing_checkpoints_are_named() -> None:
    honest = chain(events(120))
    mine = signed(honest, 1, 100)
    forger = CheckpointSigner(new_signing_seed())
    theirs = signed(honest, 2, 120, forger)
    bent = wire.encode(msgspec.structs.replace(read_checkpoint(mine), number=3))  # type: ignore[type-var]
    held = [
        Held("store", 1, mine),
        Held("stream", 1, mine.replace(b'"position":100', b'"position":101')),
        Held("store", 2, theirs),
        Held("stream", 2, theirs),
        Held("stream", 3, bent),
        Held("stream", 4, b"{}"),
        Held(
            "stream",
            5,
            wire.encode(
                SIGNER.sign(number=5, position=1, chain_hash=honest.hashes[1], signed_at=WHEN)
            ).replace(b"AITBC_KEY_EVENTS", b"OTHER_LOG"),
        ),
    ]
    result = audit(held, [TRUSTED], {"store": honest, "stream": honest})
    found = [(p.problem, p.number, p.witness) for p in result.problems]
    assert found == [
        ("differ", 1, "both"),
        ("forged", 1, "stream"),  # its position was changed after signing
        ("forged", 2, "both"),  # signed, but not by the trusted key
        ("forged", 3, "stream"),  # a copy of 1 under another number: its signature fails
        ("unreadable", 4, "stream"),
        ("forged", 5, "stream"),  # a checkpoint of another log
    ]
    assert "not trusted" in result.problems[2].detail


def test_missing_checkpoints_and_an_unverified_audit_are_warnings() -> None:
    honest = chain(events(300))
    held = [
        Held("store", 1, signed(honest, 1, 100)),
        Held("stream", 1, signed(honest, 1, 100)),
        Held("store", 3, signed(honest, 3, 300)),
    ]
    result = audit(held, [TRUSTED], {"store": honest, "stream": honest})
    assert result.problems == []
    assert result.warnings == [
        "the stream lacks checkpoint(s) 3",
        "checkpoint(s) 2 are missing from both",
    ]
    unverified = audit(held, [], {"store": honest, "stream": honest})
    assert unverified.problems == [] and unverified.verified == 0
    assert "not verified" in unverified.warnings[0]
    assert audit([], [TRUSTED], {"store": honest, "stream": honest}).warnings == [
        "no checkpoint covers the log's 300 events"
    ]
    longer = chain(events(520))
    stalled = audit(held, [TRUSTED], {"store": longer, "stream": longer}, every_events=100)
    assert stalled.warnings[-1] == (
        "220 events after the last checkpoint (position 300), more than twice the cadence "
        "(every 100): is the keys service signing?"
    )


def test_a_store_that_lost_checkpointed_events_is_named() -> None:
    honest = chain(events(200))
    held = both(signed(honest, 1, 200))
    short = chain(events(200), 150)
    truncated = chain(events(200), 150)
    truncated.finish(last_sequence=200)
    result = audit(held, [TRUSTED], {"store": short, "stream": truncated})
    assert [(p.problem, p.witness) for p in result.problems] == [
        ("removed", "store"),
        ("removed", "stream"),
    ]
