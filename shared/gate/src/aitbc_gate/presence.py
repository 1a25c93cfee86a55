"""This edge's presence on the bus, and how many edges are alive: the fail-open limiter admits
an account's limit over that many (aitbc_gate.limits), so N edges failing open admit
the limit between them, not N times it; and the overall sign-up and sign-in budgets are shared
the same way (aitbc_gate.throttle).

Every PRESENCE_EVERY seconds the edge publishes an EdgePresence under an id of its own, and
counts the edges it heard within their `alive_for` (aitbc_contracts.presence). `edges` is that
count, this edge included, kept up to date off the request path: the limiter reads an
attribute. While this edge's own connection is away it hears no one, which says nothing of the
others: the count stands, and once back each edge it knew has `alive_for` to be heard again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from aitbc_contracts.presence import (
    ALIVE_FOR,
    ALIVE_FOR_MAX,
    PRESENCE_EVERY,
    EdgePresence,
    presence_decoder,
)
from aitbc_contracts.subjects import EDGE_PRESENCE_SUBJECTS, edge_presence_subject
from aitbc_runtime.process import cancel_and_wait

log = logging.getLogger("aitbc.api.presence")
# Other edges remembered at most: whoever holds the edge's credentials may name any number,
# each kept for up to ALIVE_FOR_MAX. Far more than a deployment runs; made-up edges can lower
# a share (aitbc_gate.limits.share) to its limit over 1025 edges, and no further.
MAX_EDGES = 1024
_encode = msgspec.json.Encoder().encode


class Presence:
    def __init__(
        self, nc: NATS, every: float = PRESENCE_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.nc = nc
        self.every = every
        self.clock = clock
        self.edge_id = f"edge_{secrets.token_hex(8)}"
        self.edges = 1  # alive, this one included
        self._until: dict[str, float] = {}  # another edge's id -> until when it counts
        self._away = False  # this edge's connection was away at the last heartbeat
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    def alive(self) -> int:
        """`edges`, for whoever reads it per request (a share of a budget or of a limit)."""
        return self.edges

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="presence")

    async def stop(self) -> None:
        """Stops, and says so: the other edges count this one out at once."""
        if self._task is not None:
            await cancel_and_wait([self._task])
        with contextlib.suppress(Exception):
            await self._say(alive_for=0)
            if self._subscription is not None:
                await self._subscription.unsubscribe()

    async def _run(self) -> None:
        self._subscription = await self.nc.subscribe(EDGE_PRESENCE_SUBJECTS, cb=self._heard)
        while True:
            try:
                await self._say(ALIVE_FOR)
            except Exception as exc:  # NATS closed: the count stands, the next beat retries
                log.debug("presence not published: %s", exc)
            self._beat()
            await asyncio.sleep(self.every)

    async def _say(self, alive_for: float) -> None:
        presence = EdgePresence(self.edge_id, alive_for)
        await self.nc.publish(edge_presence_subject(self.edge_id), _encode(presence))

    async def _heard(self, msg: Msg) -> None:
        try:
            presence = presence_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return  # not a presence: it counts no one
        if presence.edge_id == self.edge_id:
            return
        if presence.alive_for > 0:
            if presence.edge_id not in self._until and len(self._until) >= MAX_EDGES:
                return
            alive_for = min(presence.alive_for, ALIVE_FOR_MAX)
            self._until[presence.edge_id] = self.clock() + alive_for
        else:
            self._until.pop(presence.edge_id, None)
        self._count()

    def _beat(self) -> None:
        """Counts out the edges not heard in time, unless this edge could not hear them."""
        if not self.nc.is_connected:
            self._away = True
            return
        now = self.clock()
        if self._away:  # back: each edge known gets its time to be heard again
            self._away = False
            self._until = {edge: max(until, now + ALIVE_FOR) for edge, until in self._until.items()}
        self._until = {edge: until for edge, until in self._until.items() if until > now}
        self._count()

    def _count(self) -> None:
        edges = 1 + len(self._until)
        if edges != self.edges:
            log.info("%d edges alive (this one is %s)", edges, self.edge_id)
        self.edges = edges
