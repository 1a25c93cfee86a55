"""What one keys process at a time does: the outbox relay, and the checkpoints of the chain head.

Any number of keys services share one database; the process that holds the share `relay` of the
lease bucket (aitbc_runtime.ownership, KEYS_LEASES_BUCKET) runs both loops, started when it
gains the share and stopped when it loses it. Correctness never rests on the lease: a second
relay's publishes are refused by the stream (the expected last sequence) and a second signer's
checkpoint by the table (its number), so the lease only keeps the work, and the load it puts on
the database and the bus, in one place; when its holder dies, the share moves within about a
lease's length.

A commit wakes the loops at once in its own process, and the holder's through the news of it
(aitbc_keys.commits), so a revocation committed in any keys process reaches the stream about as
soon. Nothing depends on a wake: a holder also looks every `relay_poll_interval`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import msgspec
from nats.aio.client import Client as NatsClient
from nats.js.errors import KeyDeletedError, KeyNotFoundError

from aitbc_contracts.ownership import LeaseShare
from aitbc_contracts.subjects import KEYS_LEASES_BUCKET
from aitbc_keys.checkpoints import Checkpointer
from aitbc_keys.outbox import OutboxRelay
from aitbc_keys.store import Record
from aitbc_runtime.ownership import Ownership

log = logging.getLogger(__name__)

RELAY_SHARE = "relay"  # the one share of the keys service's lease bucket
_share = msgspec.json.Decoder(LeaseShare).decode


class Writing:
    """The relay and the checkpointer (None: no signing key) of this process, run while it
    holds `relay`."""

    def __init__(self, relay: OutboxRelay, checkpointer: Checkpointer | None) -> None:
        self.relay = relay
        self.checkpointer = checkpointer
        self.running = False  # the loops run here: this process holds `relay`
        self._lock = asyncio.Lock()  # one start or stop at a time: the lease's calls may cross

    def wake(self) -> None:
        """Events were committed, here or in another keys process: look now, if running."""
        if self.running:
            self.relay.wake()
            if self.checkpointer is not None:
                self.checkpointer.wake()

    def committed(self, records: Sequence[Record]) -> None:
        """Events were committed here: the relay, if it runs here, publishes them as they are
        (it need not read them back first)."""
        if self.running:
            self.relay.offer(records)
        self.wake()

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
                self.running = False
                log.info(
                    "stopping the outbox relay and the checkpoints (%s)",
                    "handed over" if handed_over else "the lease lapsed",
                )
                await self._stop_loops()

    async def close(self) -> None:
        """Stops the loops whatever the lease said last (a stop of the lease cancelled while it
        was stopping them leaves them to this)."""
        async with self._lock:
            self.running = False
            await self._stop_loops()

    async def _stop_loops(self) -> None:
        await self.relay.stop()  # before the connection it publishes on is closed
        if self.checkpointer is not None:
            await self.checkpointer.stop()


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
    try:
        await ownership.start()
        await settled(ownership, writing, nc, ttl)
        yield ownership
    finally:
        await ownership.stop()
        await writing.close()


async def settled(ownership: Ownership, writing: Writing, nc: NatsClient, within: float) -> None:
    """Until the relay runs here or the bucket names another holder (for at most `within`
    seconds): a keys service alone, or the first after a clean stop, takes `relay` on its first
    pass, and relays from the moment it says it is ready."""
    kv = await nc.jetstream().key_value(KEYS_LEASES_BUCKET)
    try:
        async with asyncio.timeout(within):
            while not writing.running:
                try:
                    entry = await kv.get(f"share.{RELAY_SHARE}")
                    holder = _share(entry.value).owner if entry.value else None
                except (KeyNotFoundError, KeyDeletedError, msgspec.MsgspecError):
                    holder = None
                if holder not in (None, ownership.member):
                    return  # held elsewhere, or held by one that is replaced after its lease
                await asyncio.sleep(0.01)
    except TimeoutError:
        log.warning("no keys process took the relay within %.1f s; it will be taken later", within)
