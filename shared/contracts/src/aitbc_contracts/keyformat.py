"""The API key format: `aitbc_` + 43 base62 characters of secret + 6 of CRC32 checksum.

Like GitHub's tokens, the checksum lets anyone reject a mistyped or made-up key locally,
without a lookup. The secret is 32 random bytes (256 bits), so a plain SHA-256 is a safe
way to store it: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib

PREFIX = "aitbc_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SECRET_BYTES = 32
SECRET_LENGTH = 43  # ceil(256 / log2(62))
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
KEY_LENGTH = len(PREFIX) + SECRET_LENGTH + CHECKSUM_LENGTH
HINT_LENGTH = len(PREFIX) + 4
_ALPHABET_SET = frozenset(ALPHABET)


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def generate_key() -> str:
    body = PREFIX + _base62(int.from_bytes(secrets.token_bytes(SECRET_BYTES)), SECRET_LENGTH)
    return body + _checksum(body)


def is_well_formed(key: str) -> bool:
    """Prefix, length, alphabet and checksum: the checks that need no lookup."""
    if len(key) != KEY_LENGTH or not key.startswith(PREFIX):
        return False
    rest = key[len(PREFIX) :]
    if not _ALPHABET_SET.issuperset(rest):
        return False
    body = key[:-CHECKSUM_LENGTH]
    return _checksum(body) == key[-CHECKSUM_LENGTH:]


def key_digest(key: str) -> bytes:
    """A key's SHA-256: 32 bytes, what the edge's cache is keyed by (half its hex's memory)."""
    return hashlib.sha256(key.encode("ascii")).digest()


def hash_key(key: str) -> str:
    """A key's SHA-256 in hex: how the keys service stores it and the bus carries it."""
    return key_digest(key).hex()


def hint(key: str) -> str:
    """The first characters of a key: enough for a person to recognise it, useless to guess."""
    return key[:HINT_LENGTH]


# --- public identifiers: not secret, shown in URLs and events ------------------------------
KEY_ID_PATTERN = re.compile(r"key_[0-9a-f]{16}")
ACCOUNT_ID_PATTERN = re.compile(r"acc_[0-9a-f]{16}")


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def new_account_id() -> str:
    return "acc_" + secrets.token_hex(8)


def is_key_id(value: str) -> bool:
    return KEY_ID_PATTERN.fullmatch(value) is not None


def is_account_id(value: str) -> bool:
    return ACCOUNT_ID_PATTERN.fullmatch(value) is not None
