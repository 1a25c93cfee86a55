"""A response's head held until its body's first part, both sent in one write."""

from __future__ import annotations

import asyncio
from typing import Any

from aitbc_api.response_writes import CONTINUE, HeadWithBody


class Recorded:
    """A transport that records its calls: each write or writelines is one system call."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(data)

    def writelines(self, parts: Any) -> None:
        self.calls.append(tuple(parts))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True


def _held(transport: Recorded) -> HeadWithBody:
    return HeadWithBody(transport, asyncio.get_running_loop())  # type: ignore[arg-type]


async def test_a_head_and_its_body_go_in_one_call_and_the_rest_as_they_come() -> None:
    transport = Recorded()
    writes = _held(transport)
    writes.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.calls == []
    writes.write(b"part 1")
    writes.write(b"part 2")
    assert transport.calls == [(b"HTTP/1.1 200 OK\r\n\r\n", b"part 1"), b"part 2"]
    await asyncio.sleep(0)  # the turn's end finds nothing held
    assert len(transport.calls) == 2


async def test_a_head_no_body_follows_goes_out_at_the_end_of_the_turn() -> None:
    transport = Recorded()
    writes = _held(transport)
    writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")  # a HEAD answer
    await asyncio.sleep(0)
    assert transport.calls == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"]


async def test_100_continue_is_never_held_and_a_close_sends_the_head_first() -> None:
    transport = Recorded()
    writes = _held(transport)
    writes.write(CONTINUE)
    assert transport.calls == [CONTINUE]
    writes.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    writes.close()
    assert transport.calls == [CONTINUE, b"HTTP/1.1 500 Internal Server Error\r\n\r\n", "close"]
    await asyncio.sleep(0)
    assert len(transport.calls) == 3
