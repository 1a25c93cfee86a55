"""Names people give accounts and keys, and what may be in them: the one rule for the edge's
bodies, the keys service's decisions and the CLI's printing.

Control characters (Unicode category Cc: NUL, ESC, the C1 controls such as CSI), format
characters (Cf: the bidirectional overrides and isolates such as U+202E, zero-width joiners,
tag characters), line and paragraph separators (Zl, Zp) and lone surrogates (Cs) are refused in
names: they move a terminal's cursor, rewrite what an operator reads, or make one name look
like another. Names the log already holds may have them (they were accepted once), so whatever
prints a name for people escapes them (`escaped`).
"""

from __future__ import annotations

import unicodedata

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def unsafe(char: str) -> bool:
    """Whether one character is of a category names may not hold."""
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def unsafe_character(text: str) -> str | None:
    """Why `text` may not be a name ("U+202E at position 3"), or None if it may."""
    for position, char in enumerate(text):
        if unsafe(char):
            return f"U+{ord(char):04X} at position {position}"
    return None


def check_name(text: str, what: str = "name") -> str:
    """`text`, if it holds no unsafe character; ValueError saying which one otherwise (a
    msgspec `__post_init__` turns it into a validation error of the field)."""
    why = unsafe_character(text)
    if why is not None:
        raise ValueError(f"{what} may not hold control or format characters ({why})")
    return text


def escaped(text: str) -> str:
    """`text` for a terminal: each unsafe character as a visible escape (`\\u202e`), the rest
    as it is."""
    if text.isascii() and text.isprintable():
        return text  # the common case, without a look at each character
    return "".join(_escape(char) if unsafe(char) else char for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
