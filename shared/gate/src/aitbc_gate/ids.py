"""Random ids for requests and usage events."""

from __future__ import annotations

import os


class _RandomIds:
    """128-bit random ids in hex, as uuid4().hex but without a getrandom() call per id:
    the kernel's randomness is read 256 ids at a time."""

    __slots__ = ("_at", "_pool")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._pool = ""
        self._at = 0

    def __call__(self) -> str:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(16 * 256).hex(), 0
        start = self._at
        self._at += 32
        return self._pool[start : self._at]


new_id = _RandomIds()
os.register_at_fork(after_in_child=new_id.reset)  # a forked worker must not repeat ids
