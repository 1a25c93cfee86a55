"""News of commits between keys processes: what one committed, told to the others at once.

Each keys process learns the others' events from the key event stream, a few milliseconds after
they commit (the relay, JetStream, the mirror), and during a relay's takeover a lease later.
Meanwhile its facts index would answer a check of a key another process has just revoked with
the facts from before, and an edge could cache them for its whole TTL. So after each commit a
process publishes a Committed (the streams it changed and their versions) on the writer's
connection, in KEYLOG, where only the keys services' writers are; each other process marks those
streams as behind in its facts index, whose checks of their keys then ask the database until
the stream brings the versions; and the process running the outbox relay relays them now.
Nothing depends on a message arriving: without it, a process knows what it knew before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from aitbc_contracts.messages import Committed
from aitbc_contracts.subjects import KEYS_COMMITTED
from aitbc_keys.facts import FactsIndex
from aitbc_keys.store import Record
from aitbc_keys.writing import Writing
from aitbc_runtime.process import cancel_and_wait

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Committed).decode
TELL_WITHIN = 0.5  # seconds a command's reply waits at most for its news to be sent


class CommitNews:
    """Sends this process's commits (`committed`, the unit of work's after-commit call) and
    hears the others'."""

    def __init__(self, writer: NatsClient, index: FactsIndex, writing: Writing) -> None:
        self.writer = writer
        self.index = index
        self.writing = writing
        self.origin = uuid.uuid4().hex[:16]
        self.sent = 0  # Committed messages published (one for the commits since the last)
        self.heard = 0  # the other processes' Committed messages received
        self._unsent: dict[str, int] = {}  # stream id -> its version, committed here
        self._commits = 0  # commits here so far
        self._flushed = 0  # of those, how many the others have been sent (flushed to the bus)
        self._progress = asyncio.Event()  # set, and replaced, whenever _flushed moves
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def committed(self, records: Sequence[Record]) -> None:
        """After a commit here, with what it stored: the relay handed them if it runs here,
        the others told."""
        self.writing.committed(records)
        for record in records:
            versions = self._unsent
            versions[record.stream_id] = max(versions.get(record.stream_id, 0), record.version)
        self._commits += 1
        self._ready.set()

    async def told(self, within: float = TELL_WITHIN) -> None:
        """Until the others have been sent the news of every commit made here so far (at once
        when there was none): a command's reply waits for it, so that a process killed just
        after replying cannot leave another vouching for a key it revoked. Past `within`
        (the bus away), the reply goes anyway: the others learn it from the stream."""
        target = self._commits
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while self._flushed < target:
                    progress = self._progress
                    await progress.wait()

    async def start(self) -> None:
        await self.writer.subscribe(KEYS_COMMITTED, cb=self._heard)
        self._tasks = [asyncio.create_task(self._sending(), name="aitbc-keys-commit-news")]

    async def stop(self) -> None:
        """Stops sending (the subscription ends with the writer's connection)."""
        await cancel_and_wait(self._tasks)

    async def _heard(self, msg: Msg) -> None:
        try:
            news = _decode(msg.data)
        except msgspec.MsgspecError as exc:
            log.warning("malformed commit news: %s", exc)
            return
        if news.origin != self.origin:
            self.heard += 1
            self.index.behind(news.versions)
            self.writing.wake()

    async def _sending(self) -> None:
        """One message for however many commits happened since the last went out."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            versions, self._unsent = self._unsent, {}
            covered = self._commits
            try:
                await self.writer.publish(KEYS_COMMITTED, _encode(Committed(self.origin, versions)))
                await self.writer.flush(timeout=1)
                self.sent += 1
                self._flushed = covered
                self._progress.set()
                self._progress = asyncio.Event()
            except Exception as exc:  # the bus away: the others learn it from the stream
                log.debug("commit news not sent: %r", exc)
                await asyncio.sleep(0.1)


@asynccontextmanager
async def telling(news: CommitNews) -> AsyncIterator[CommitNews]:
    await news.start()
    try:
        yield news
    finally:
        await news.stop()
