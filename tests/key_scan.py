"""Finding plaintext API keys in text: what every secrets check (pages, cookies, logs, the
database, the event stream, screenshots' pages) looks for."""

from __future__ import annotations

import re

from aitbc_contracts.keyformat import is_well_formed

# Any well-formed key, whoever made it: prefix, 49 base62 characters, a valid checksum.
KEY_PATTERN = re.compile(r"aitbc_[0-9A-Za-z]{49}")


def plaintext_keys(text: str) -> set[str]:
    return {match for match in KEY_PATTERN.findall(text) if is_well_formed(match)}
