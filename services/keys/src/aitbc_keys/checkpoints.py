"""Signed checkpoints of the key event log: the keys service signs the chain head every
`every_events` new events, or `every_seconds` after its last checkpoint when anything is new,
with the key in its checkpoint key file (aitbc_runtime.checkpoint_keys).

Before it signs, it recomputes the chain from its last checkpoint to the head: it never vouches
for a store that does not continue the history it signed before. Each checkpoint is stored
(aitbc_keys.checkpoint_store), then published on the writer connection to a stream of its own,
on a subject of its number with "no message on this subject yet" as the publish's condition:
a checkpoint lands in the stream once, whoever publishes it and however often. Publishing
resumes after the stream's last checkpoint, so a stream lost or purged is refilled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.checkpoints import (
    EVERY_EVENTS,
    EVERY_SECONDS,
    Checkpoint,
    checkpoint_subject,
    number_of_subject,
)
from aitbc_contracts.subjects import (
    EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER,
    KEY_CHECKPOINTS_STREAM,
    KEY_CHECKPOINTS_SUBJECTS,
)
from aitbc_keys import checkpoint_store, store
from aitbc_keys.background import WokenLoop
from aitbc_keys.domain import utcnow
from aitbc_keys.outbox import WRONG_LAST_SEQUENCE, ensure
from aitbc_runtime.checkpoint_keys import CheckpointSigner, TrustedKey, read_checkpoint

log = logging.getLogger(__name__)


def stream_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=KEY_CHECKPOINTS_STREAM,
        subjects=[KEY_CHECKPOINTS_SUBJECTS],
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


class Checkpointer(WokenLoop):
    """Signs, stores and publishes checkpoints of the key event log while it runs."""

    def __init__(
        self,
        engine: AsyncEngine,
        nc: NatsClient,
        signer: CheckpointSigner,
        *,
        every_events: int = EVERY_EVENTS,
        every_seconds: float = EVERY_SECONDS,
        clock: Callable[[], datetime] = utcnow,
        publish_timeout: float = 5.0,
        replicas: int = 1,  # of the stream, if it must make it
    ) -> None:
        super().__init__("aitbc-keys-checkpoints", grace=publish_timeout)
        self.engine = engine
        self.signer = signer
        self._own = TrustedKey(signer.key_id)
        self.every_events = every_events
        self.every_seconds = every_seconds
        self.clock = clock
        self.publish_timeout = publish_timeout
        self.replicas = replicas
        self.signed = 0  # checkpoints this process signed and stored
        self.refused: str | None = None  # why the last attempt to sign was refused
        self._js = nc.jetstream(timeout=publish_timeout)
        self._published: int | None = None  # the stream's last checkpoint number; None: ask
        self._last_attempt = -float("inf")  # time.monotonic() of the last signing attempt

    def start(self) -> asyncio.Task[None]:
        self._published = None  # another keys process may have published meanwhile: ask
        return super().start()

    async def run(self) -> None:
        """Until stopped; NATS and database failures are logged and retried."""
        backoff = 0.05
        while not self._stopping:
            self._wake.clear()  # before looking: an append while we look wakes the next wait
            try:
                wait = await self.step()
                backoff = 0.05
            except Exception as exc:
                log.warning("checkpoint error, retrying in %.2fs: %r", backoff, exc)
                self._published = None
                wait, backoff = backoff, min(backoff * 2, 5.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def step(self) -> float:
        """Sign the head if a checkpoint is due, and publish what the stream lacks; returns the
        seconds until the next look (an append wakes it sooner)."""
        if self._published is None:  # starting, or after a failure: catch the stream up
            await self.publish_pending()
        last = await checkpoint_store.last(self.engine)
        new = await store.last_position(self.engine) - last.position
        since = time.monotonic() - self._last_attempt
        by_count = new >= self.every_events and self.refused is None
        if new <= 0 or not (by_count or since >= self.every_seconds):
            return self.every_seconds - since if new > 0 else self.every_seconds
        self._last_attempt = time.monotonic()
        if await self.sign_after(last) is not None:
            await self.publish_pending()
        return self.every_seconds

    async def sign_after(self, last: checkpoint_store.Last) -> Checkpoint | None:
        """Sign and store the head after checkpoint `last`, if the store continues it."""
        chain = await checkpoint_store.recompute_from(self.engine, last)
        found = chain.first_break
        if found is not None:
            reason = f"{found.problem} at position {found.position}: {found.detail}"
            if reason != self.refused:
                log.error(
                    "no checkpoint signed: the event store does not continue checkpoint %d "
                    "(position %d): %s",
                    last.number, last.position, reason,
                )  # fmt: skip
            self.refused = reason
            return None
        self.refused = None
        if chain.position <= last.position:
            return None
        checkpoint = self.signer.sign(
            number=last.number + 1,
            position=chain.position,
            chain_hash=chain.head,
            signed_at=self.clock(),
        )
        if not await checkpoint_store.add(self.engine, checkpoint):
            return None  # another keys service signed this number first
        self.signed += 1
        log.info(
            "checkpoint %d signed: position %d, chain hash %s",
            checkpoint.number, checkpoint.position, checkpoint.chain_hash[:16],
        )  # fmt: skip
        return checkpoint

    async def publish_pending(self) -> None:
        """Publish the stored checkpoints the stream does not have yet, in order."""
        if self._published is None:
            await ensure(self._js, stream_config(self.replicas))
            self._published = await self._last_in_stream()
        while batch := await checkpoint_store.after(self.engine, self._published):
            for number, data in batch:
                await self._publish(number, data)
                self._published = number

    async def _last_in_stream(self) -> int:
        """The number of the stream's last checkpoint, if this key signed it: anything else
        there (an admin's message, an older key's checkpoint) could name any number, so then
        every stored checkpoint is offered again (those already there are refused)."""
        try:
            last = await self._js.get_last_msg(KEY_CHECKPOINTS_STREAM, KEY_CHECKPOINTS_SUBJECTS)
        except NotFoundError:
            return 0
        checkpoint = read_checkpoint(last.data or b"")
        number = number_of_subject(last.subject or "")
        if (
            isinstance(checkpoint, str)
            or checkpoint.number != number
            or self._own.check(checkpoint)
        ):
            log.warning("the checkpoints' last message is not one of ours: offering them all")
            return 0
        return checkpoint.number

    async def _publish(self, number: int, data: bytes) -> None:
        try:
            await self._js.publish(
                checkpoint_subject(number),
                data,
                timeout=self.publish_timeout,
                stream=KEY_CHECKPOINTS_STREAM,
                headers={EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER: "0"},
            )
        except BadRequestError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            # The stream has this number already: a lost ack, a restart, another keys service.
