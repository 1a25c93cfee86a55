"""Printing for people (tables, key/value lines) and for programs (`--json`).

What it prints comes from the log, where old events may hold names with control or format
characters (a bidi override, an escape sequence): tables and lines show them escaped
(aitbc_contracts.names.escaped), and JSON spells them as `\\u` escapes, which decode to the same
values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

import msgspec

from aitbc_contracts.messages import KeyView
from aitbc_contracts.names import escaped, unsafe

KEY_COLUMNS = ("KEY ID", "NAME", "KIND", "STATUS", "HINT", "CREATED", "EXPIRES")


def when(value: datetime | None) -> str:
    """A timestamp to the second, in UTC when it has a zone; '-' for none."""
    if value is None:
        return "-"
    offset = value.utcoffset()
    if offset is not None and not offset:
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return value.isoformat(sep=" ", timespec="seconds")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart, no trailing spaces; every cell escaped."""
    rows = [[escaped(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines)


def key_rows(keys: Sequence[KeyView]) -> list[list[str]]:
    return [
        [
            k.key_id,
            k.name or "-",
            k.kind,
            k.status,
            k.hint + "...",
            when(k.created_at),
            when(k.expires_at),
        ]
        for k in keys
    ]


def keys_table(keys: Sequence[KeyView]) -> str:
    if not keys:
        return "no keys"
    return table(KEY_COLUMNS, key_rows(keys))


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    """`label:  value` lines, labels aligned; every value escaped."""
    width = max(len(label) for label, _ in pairs) + 1
    return "\n".join(f"{(label + ':').ljust(width)}  {escaped(value)}" for label, value in pairs)


def as_data(struct: msgspec.Struct) -> dict[str, Any]:
    """A reply as plain JSON-ready data, without its wire tag."""
    data: dict[str, Any] = msgspec.to_builtins(msgspec.structs.asdict(struct))
    return data


def print_json(value: Any, out: TextIO) -> None:
    out.write(json_safe(msgspec.json.format(msgspec.json.encode(value), indent=2).decode()) + "\n")


def json_safe(text: str) -> str:
    """JSON text with every unsafe character of its strings as a `\\u` escape: the same JSON
    values, nothing a terminal acts on. JSON escapes those below U+0020 in strings already, and
    outside strings there is only whitespace, which stays."""
    if text.isascii() and "\x7f" not in text:
        return text
    return "".join(_json_escape(c) if c >= "\x7f" and unsafe(c) else c for c in text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # beyond the BMP: a surrogate pair, as JSON spells it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def restriction_fields(
    scopes: tuple[str, ...], allowed_ips: tuple[str, ...], shadow: bool
) -> list[tuple[str, str]]:
    """A key's restrictions for people: what "none" means said outright."""
    return [
        ("scopes", " ".join(scopes) or "- (everything its kind may call)"),
        ("allowed ips", " ".join(allowed_ips) or "- (anywhere)"),
        ("shadow", "yes" if shadow else "no"),
    ]
