"""Signed checkpoints of the key event log: the chain head (aitbc_contracts.chain) at a
position, signed with Ed25519 by the keys service's checkpoint key.

A checkpoint makes a rewrite of the whole log visible: someone who alters an event and
recomputes every chain hash after it, in the store and the stream alike, cannot sign the new
head without the key, so the checkpoints already published no longer match.

The signature covers the signed bytes, defined exactly here (any language can rebuild them):
the UTF-8 text of seven lines, each ended by a single "\\n":

    aitbc-key-checkpoint/1        the format (FORMAT)
    AITBC_KEY_EVENTS              `log`: the log it covers
    12                            `number`: 1, 2, 3 ... in signing order (decimal, no sign)
    1200                          `position`: the head's position, which is also the number of
                                  events covered (positions run 1..n with no gap)
    <64 lowercase hex digits>     `chain_hash`: the chain hash at that position
    2026-01-02T03:04:05.000006Z   `signed_at` in UTC, always with six fraction digits and "Z"
    O...                          `key_id`: the signer's public key (an nkey, base32)

`key_id` says which key signed it, so that a key rotation can be told from a forgery; a
verifier checks the signature with the public key it trusts (a setting), never with one the
checkpoint names. The wire form is the msgspec JSON of `Checkpoint`, `signature` in base64.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec

from aitbc_contracts.subjects import KEY_CHECKPOINTS_PREFIX, KEY_EVENTS_STREAM

FORMAT = "aitbc-key-checkpoint/1"
# The default cadence: a checkpoint every this many new events, or this many seconds after
# the last one when anything is new (the keys service's KEYS_CHECKPOINT_EVERY_* settings).
EVERY_EVENTS = 100
EVERY_SECONDS = 10.0
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# No field may hold a line break or a space: each is one line of the signed bytes.
Token = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]
Hash = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
Count = Annotated[int, msgspec.Meta(ge=1)]


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """The key event log's chain head at `position`, signed."""

    log: Token = KEY_EVENTS_STREAM
    number: Count
    position: Count
    chain_hash: Hash
    signed_at: Annotated[datetime, msgspec.Meta(tz=True)]
    key_id: Token
    signature: bytes = b""  # Ed25519 over signed_bytes(); empty until signed


def signed_bytes(checkpoint: Checkpoint) -> bytes:
    """What the signature covers (see the module's documentation)."""
    if checkpoint.signed_at.tzinfo is None:
        raise ValueError("signed_at must be an aware datetime")
    when = checkpoint.signed_at.astimezone(UTC).strftime(TIME_FORMAT)
    lines = (
        FORMAT,
        checkpoint.log,
        str(checkpoint.number),
        str(checkpoint.position),
        checkpoint.chain_hash,
        when,
        checkpoint.key_id,
    )
    return "".join(f"{line}\n" for line in lines).encode()


def checkpoint_subject(number: int) -> str:
    """aitbc.keys.checkpoints.<number>: one subject per checkpoint, so the stream can refuse a
    second, different message with the same number."""
    return f"{KEY_CHECKPOINTS_PREFIX}.{number}"


def number_of_subject(subject: str) -> int | None:
    """The checkpoint number a subject names; None for a subject of no checkpoint."""
    prefix = f"{KEY_CHECKPOINTS_PREFIX}."
    tail = subject[len(prefix) :] if subject.startswith(prefix) else ""
    return int(tail) if tail.isdecimal() else None


encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder(Checkpoint).decode
