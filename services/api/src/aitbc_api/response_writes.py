"""A response's head and the first part of its body in one write to the socket.

uvicorn writes a response's head when the app sends `http.response.start` and each part of
the body when it sends `http.response.body`: two system calls for the answer that nearly
every request gets, head and whole body back to back. The head's write alone was an eighth
of the edge's CPU on its public route (bench/results/ANALYSIS.md, session 15). The transport
below, given to each of uvicorn's response cycles in place of the connection's own, holds the
head back and sends it with the next write, both in one `writelines` (uvloop: one writev). A
head that no write follows within the event loop's turn (a HEAD answer, a stream whose first
part is late) goes out on its own at the end of that turn: never later than before."""

from __future__ import annotations

import asyncio

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"  # written by the cycle before the app reads a body


class HeadWithBody:
    """The transport one response cycle writes to (the methods uvicorn's cycle uses)."""

    __slots__ = ("_held", "_loop", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._started = False  # the response's head has been written (or held)

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif self._started or data == CONTINUE:
            self._transport.write(data)
        else:
            self._started = True
            self._held = data
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()  # a response that ends the connection: its head first
        self._transport.close()
