"""The checkpoint keys: the keys service signs the key event log's head with an Ed25519 key
kept in a file (never in the database), and verifiers trust its public key, given to them.

The signing key is an nkey seed of the operator type (`SO...`, one line, mode 0600, as `just
up` makes it in DATA_DIR/creds); its public key (`O...`) is the key id every checkpoint names.
A verifier's trusted key is such a public key, written out or in a file.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import msgspec
import nkeys
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from aitbc_contracts.checkpoints import EVERY_EVENTS, Checkpoint, decode, signed_bytes
from aitbc_runtime.bus_access import read_secret_file

SEED_PREFIX = "SO"  # an operator seed: never a role's user seed (SU...) by mistake
PUBLIC_PREFIX = "O"


class CheckpointKeyError(ValueError):
    """A key that cannot be used: which and why, in one line, the key itself never shown."""


def positive(env: Mapping[str, str], name: str, default: float) -> float:
    """A setting that must be a number above 0."""
    value = env.get(name) or str(default)
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if not number > 0:
        raise ValueError(f"{name} must be more than 0: {value!r}")
    return number


def every_events(env: Mapping[str, str] = os.environ) -> int:
    """KEYS_CHECKPOINT_EVERY_EVENTS: the keys service signs at this cadence, and verifiers
    expect it."""
    return int(positive(env, "KEYS_CHECKPOINT_EVERY_EVENTS", EVERY_EVENTS))


def new_signing_seed() -> str:
    """A new checkpoint signing key, as an nkey seed."""
    return str(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_OPERATOR).decode())


def public_key_of(seed: str) -> str:
    if not seed.startswith(SEED_PREFIX):
        raise CheckpointKeyError(
            f"a checkpoint signing key is an operator nkey seed ({SEED_PREFIX}...)"
        )
    try:
        return str(nkeys.from_seed(bytearray(seed.encode())).public_key.decode())
    except Exception as exc:  # nkeys raises its own error types, and binascii's
        raise CheckpointKeyError(f"not an nkey seed: {type(exc).__name__}") from None


class CheckpointSigner:
    """Signs checkpoints with the key in a file; the seed stays inside this object."""

    def __init__(self, seed: str) -> None:
        self.key_id = public_key_of(seed.strip())
        self._pair = nkeys.from_seed(bytearray(seed.strip().encode()))

    @classmethod
    def from_file(cls, path: str) -> CheckpointSigner:
        """The key in `path`, refused unless only its owner may read it."""
        try:
            return cls(read_secret_file(path, "checkpoint signing key"))
        except CheckpointKeyError as exc:
            raise CheckpointKeyError(f"the checkpoint signing key {path}: {exc}") from None
        except ValueError as exc:
            raise CheckpointKeyError(str(exc)) from None

    def sign(
        self, *, number: int, position: int, chain_hash: str, signed_at: datetime
    ) -> Checkpoint:
        unsigned = Checkpoint(
            number=number,
            position=position,
            chain_hash=chain_hash,
            signed_at=signed_at,
            key_id=self.key_id,
        )
        signature = bytes(self._pair.sign(signed_bytes(unsigned)))
        return msgspec.structs.replace(unsigned, signature=signature)


def _raw_public_key(key_id: str) -> bytes:
    """The 32 bytes of an nkey public key (`O...`): base32 of prefix, key, CRC-16."""
    try:
        raw = base64.b32decode(key_id)
    except (binascii.Error, ValueError):
        raise CheckpointKeyError("not an nkey public key") from None
    body, crc = raw[:-2], raw[-2:]
    if len(body) != 33 or nkeys.crc16_checksum(body) != crc:
        raise CheckpointKeyError("not an nkey public key")
    if body[0] != nkeys.PREFIX_BYTE_OPERATOR:
        raise CheckpointKeyError(f"a checkpoint key is an operator public key ({PUBLIC_PREFIX}...)")
    return bytes(body[1:])


@dataclass(frozen=True)
class TrustedKey:
    """The public key checkpoints must be signed with."""

    key_id: str

    def __post_init__(self) -> None:
        _raw_public_key(self.key_id)  # refuse a bad key here, not at the first checkpoint

    @classmethod
    def parse(cls, value: str) -> TrustedKey:
        """A public key (`O...`), or a file holding one (`checkpoint-key.pub`)."""
        text = value.strip()
        if Path(text).is_file() or not text.startswith(PUBLIC_PREFIX):
            try:
                text = Path(text).read_text().strip()
            except OSError as exc:
                raise CheckpointKeyError(
                    f"cannot read the checkpoint public key {value}: {exc.strerror}"
                ) from None
        return cls(text)

    def check(self, checkpoint: Checkpoint) -> str | None:
        """Why the checkpoint's signature is not good under this key; None: it is."""
        if checkpoint.key_id != self.key_id:
            return f"signed by another key ({checkpoint.key_id[:12]}...), not the trusted one"
        try:
            VerifyKey(_raw_public_key(self.key_id)).verify(
                signed_bytes(checkpoint), checkpoint.signature
            )
        except (BadSignatureError, ValueError):
            return "its signature does not verify under the trusted key"
        return None


def read_checkpoint(data: bytes) -> Checkpoint | str:
    """A checkpoint from its wire bytes, or why they are not one."""
    try:
        return decode(data)
    except msgspec.MsgspecError as exc:
        return f"not a checkpoint: {exc}"
