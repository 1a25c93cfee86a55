"""The path a forwarded request goes upstream with: the client's raw path, as sent, and only
one that stays under `/v1/`.

The router matches the *decoded* path, and an HTTP client library resolves dot segments in the
URL it is given: `/v1/jobs/%2e%2e/%2e%2e/schema` decoded and resolved is `/schema`, outside
the prefix. So the raw path (the ASGI scope's `raw_path`) is what goes upstream, unchanged, and
a path is refused (400 INVALID_PATH) when any reading of it could leave the prefix: a `.` or
`..` segment, literal or percent-encoded; an encoded separator (`%2F`, `%5C`, `%3F`, `%23`); an
encoded `%` (double encoding: `%252e` is `%2e` to whoever decodes it twice); an encoded
control character; a backslash. Anything else is forwarded byte for byte, so the upstream
decodes exactly the path the edge routed and authorised.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from aitbc_contracts.messages import Code
from aitbc_gate.errors import ApiError

PREFIX = b"/v1/"
# Percent-encodings no path needs and some reader would take for something else: separators,
# `%` itself (decoded twice it is whatever follows), control characters.
_ENCODED_REFUSED = re.compile(rb"%(?:2[fF]|5[cC]|3[fF]|23|25|[01][0-9a-fA-F]|7[fF])")
_DOT_SEGMENTS = (b".", b"..")


def forwarded_path(raw: bytes) -> bytes:
    """`raw`, as the upstream is to get it, or 400 INVALID_PATH. Cheap when there is nothing
    to look at: the real work is only for a path with a `%`, a `/.` or a backslash."""
    if (
        raw.startswith(PREFIX)
        and b"%" not in raw
        and b"/." not in raw
        and b"\\" not in raw
        and raw.isascii()
    ):
        return raw
    reason = _refusal(raw)
    if reason:
        raise ApiError(400, Code.INVALID_PATH, reason)
    return raw


def _refusal(raw: bytes) -> str:
    """Why `raw` may not be forwarded; "" when it may."""
    if not raw.startswith(PREFIX):
        return "The path must stay under /v1/"
    if b"\\" in raw or _ENCODED_REFUSED.search(raw):
        return (
            "The path may not hold a backslash, an encoded separator (%2F, %5C, %3F, %23), "
            "an encoded % or an encoded control character"
        )
    if any(segment in _DOT_SEGMENTS for segment in unquote_to_bytes(raw).split(b"/")):
        return "The path may not hold . or .. segments (literal or percent-encoded)"
    if not raw.isascii():
        return "The path must be ASCII: percent-encode other bytes"
    return ""
