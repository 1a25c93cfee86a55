"""What one keys process at a time does: the outbox relay, and the checkpoints of the chain head.

Any number of keys services share one database; the process that holds the share `relay` of the
lease bucket (aitbc_runtime.ownership, KEYS_LEASES_BUCKET) runs both loops, started when it
gains the share and stopped when it loses it. Correctness never rests on the lease: a second
relay's publishes are refused by the stream (the expected last sequence) and a second signer's
checkpoint by the table (its number), so the lease only keeps the work, and the load it puts on
the database and the bus, in one place; when its holder dies, the share moves within about a
lease's length.

A commit in this process wakes the loops at once when they run here. Where they do not, it
publishes a RelayWake on the writer's connection (KEYLOG, where only the keys services' writers
are); the holder's subscription wakes its loops, so a revocation committed in either process
reaches the stream about as soon (a bus hop more). Wakes are coalesced and nothing depends on
one arriving: a holder also looks every `relay_poll_interval`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from aitbc_contracts.subjects import KEYS_LEASES_BUCKET, KEYS_RELAY_WAKE
from aitbc_keys.checkpoints import Checkpointer
from aitbc_keys.outbox import OutboxRelay
from aitbc_runtime.ownership import Ownership
from aitbc_runtime.process import cancel_and_wait

log = logging.getLogger(__name__)

RELAY_SHARE = "relay"  # the one share of the keys service's lease bucket
WAKE = b"{}"  # a RelayWake: it says nothing but "look"


class Writing:
    """The relay and the checkpointer (None: no signing key) of this process, run while it
    holds `relay`; `wake()` is every commit's, here or by the holder."""

    def __init__(
        self, relay: OutboxRelay, checkpointer: Checkpointer | None, writer: NatsClient
    ) -> None:
        self.relay = relay
        self.checkpointer = checkpointer
        self.writer = writer
        self.running = False  # the loops run here: this process holds `relay`
        self.wakes_sent = 0  # RelayWakes published for the holder
        self.wakes_heard = 0  # RelayWakes that woke the loops here
        self._lock = asyncio.Lock()  # one start or stop at a time: the lease's calls may cross
        self._signal = asyncio.Event()  # a commit here while the loops run elsewhere
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Subscription | None = None

    def wake(self) -> None:
        """After a commit: the loops here, or the holder's over the bus."""
        if self.running:
            self._wake_here()
        else:
            self._signal.set()

    async def open(self) -> None:
        """Listens for other processes' commits, and sends this one's (both idle until it is
        known who holds `relay`)."""
        self._subscription = await self.writer.subscribe(KEYS_RELAY_WAKE, cb=self._heard)
        self._tasks = [asyncio.create_task(self._signalling(), name="aitbc-keys-relay-wakes")]

    async def close(self) -> None:
        """Stops everything, whatever the lease said last (the lease's own stop comes first)."""
        await cancel_and_wait(self._tasks)
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        async with self._lock:
            self.running = False
            await self._stop_loops()

    async def gained(self, name: str, epoch: int) -> None:
        async with self._lock:
            if not self.running:
                log.info("running the outbox relay and the checkpoints (lease epoch %d)", epoch)
                self.relay.start()  # each looks at the stream first: it resumes where it is
                if self.checkpointer is not None:
                    self.checkpointer.start()
                self.running = True

    async def lost(self, name: str, handed_over: bool) -> None:
        async with self._lock:
            if self.running:
                self.running = False  # commits from now on wake the next holder
                log.info(
                    "stopping the outbox relay and the checkpoints (%s)",
                    "handed over" if handed_over else "the lease lapsed",
                )
                await self._stop_loops()

    async def _stop_loops(self) -> None:
        await self.relay.stop()  # before the connection it publishes on is closed
        if self.checkpointer is not None:
            await self.checkpointer.stop()

    def _wake_here(self) -> None:
        self.relay.wake()
        if self.checkpointer is not None:
            self.checkpointer.wake()

    async def _heard(self, msg: Msg) -> None:
        if self.running:
            self.wakes_heard += 1
            self._wake_here()

    async def _signalling(self) -> None:
        """One RelayWake for however many commits happened since the last one went out."""
        while True:
            await self._signal.wait()
            self._signal.clear()
            try:
                await self.writer.publish(KEYS_RELAY_WAKE, WAKE)
                self.wakes_sent += 1
            except Exception as exc:  # the bus away: the holder's poll finds the events
                log.debug("no relay wake sent: %r", exc)
                await asyncio.sleep(0.1)


@asynccontextmanager
async def leased(
    writing: Writing, nc: NatsClient, ttl: float, replicas: int
) -> AsyncIterator[Ownership]:
    """`writing` run by whichever keys process holds `relay`, this one among them, until the
    block ends; then this process hands the share over (its loops stopped first)."""
    ownership = Ownership(
        nc, KEYS_LEASES_BUCKET, [RELAY_SHARE], writing.gained, writing.lost,
        ttl=ttl, replicas=replicas,
    )  # fmt: skip
    await writing.open()
    try:
        await ownership.start()  # alone, or the first after a clean stop: it takes `relay` now
        yield ownership
    finally:
        await ownership.stop()
        await writing.close()
