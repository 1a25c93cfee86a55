"""An upstream's answer as the edge relays it: its head, and its body whole or as it arrives
(aitbc_api.proxy.upstream has the connections it comes on)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aitbc_api.proxy.upstream_connection import UpstreamConnection

if TYPE_CHECKING:
    from aitbc_api.proxy.upstream import UpstreamPool


class UpstreamResponse:
    """An answer whose head is in. Its body is whole already when `whole` (most answers) or
    comes in `chunks()`; `release()` hands the connection back, or closes it if unread."""

    __slots__ = ("_connection", "_pool", "_writer", "headers", "status")

    def __init__(
        self,
        connection: UpstreamConnection,
        pool: UpstreamPool,
        writer: asyncio.Task[None] | None,
    ) -> None:
        self.status = connection.status
        self.headers = connection.headers  # as received: (name, value) bytes
        self._connection: UpstreamConnection | None = connection
        self._pool = pool
        self._writer = writer  # a streamed request body still being written, if any

    @property
    def writing(self) -> asyncio.Task[None] | None:
        """The task still writing the request's streamed body upstream (it reads the client's
        `receive` until the body's end), if any."""
        writer = self._writer
        return writer if writer is not None and not writer.done() else None

    @property
    def whole(self) -> bool:
        return self._connection is not None and self._connection.complete

    def read_now(self) -> bytes:
        """The body as far as it has come (all of it, when `whole`)."""
        connection = self._connection
        if connection is None or not connection.body:
            return b""
        body = connection.body
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        connection.buffered = 0
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; UpstreamFailed if it ends before its end."""
        connection = self._connection
        while connection is not None:
            if connection.body:
                yield self.read_now()
            elif connection.complete:
                return
            elif connection.error is not None:
                raise connection.error
            else:
                await connection.more()

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            writer, self._writer = self._writer, None
            self._pool.release(connection, writer)
