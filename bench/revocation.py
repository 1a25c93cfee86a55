"""Revocation propagation: a key in use on two edges (and on the gated Coordinator, which
follows the key event stream as an edge does); the owner revokes it through the first edge;
how long after the revoke request is sent does each answer 401?

Each edge has a poller sending the key back to back on one keep-alive connection (the key is
"in use"), so an edge's time is when the first 401 reached the poller, counted from the moment
the revoke request was sent: it includes up to one request's latency. Counted from the revoke's
response instead, an edge that learns of it before the response arrives would read <= 0 ms.
The first edge evicts the key itself before it answers the revoke; the second learns it from
the key event stream (keys service -> outbox relay -> JetStream -> the edge's ordered
consumer), which is what the 50 ms target is about.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bench.httpclient import Connection, build_request


@dataclass
class Poller:
    url: str
    request: bytes
    connection: Connection = field(init=False)
    first_401: float | None = None
    statuses: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.connection = Connection.to(self.url)

    async def until_status(self, wanted: int, timeout: float = 10.0) -> None:
        deadline = time.perf_counter() + timeout
        while await self.connection.send(self.request) != wanted:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{self.url} never answered {wanted}")
            await asyncio.sleep(0.005)

    async def poll(self, stop: asyncio.Event, timeout: float = 5.0) -> None:
        deadline = time.perf_counter() + timeout
        while not stop.is_set() and time.perf_counter() < deadline:
            status = await self.connection.send(self.request)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 401 and self.first_401 is None:
                self.first_401 = time.perf_counter()
                return


async def one_revocation(
    edges: list[str], revoke_via: str, key: str, key_id: str, master: str
) -> list[float]:
    """Milliseconds from sending the revoke request to each edge's first 401 (`edges`: servers
    that answer `GET /v1/jobs` with an API key; the revoke goes through `revoke_via`)."""
    pollers = [Poller(url, build_request(url + "/v1/jobs", {"X-API-Key": key})) for url in edges]
    revoke = build_request(
        revoke_via + f"/v1/api-keys/{key_id}", {"X-API-Key": master}, method="DELETE"
    )
    revoker = Connection.to(revoke_via)
    try:
        # in use on every edge: each has it cached and admits it
        await asyncio.gather(*(p.until_status(200) for p in pollers), revoker.open())
        stop = asyncio.Event()
        polls = [asyncio.create_task(p.poll(stop)) for p in pollers]
        await asyncio.sleep(0.005)
        sent = time.perf_counter()
        status = await revoker.send(revoke)
        if status != 200:
            raise RuntimeError(f"revoking {key_id} answered {status}")
        await asyncio.gather(*polls)
        times = []
        for poller in pollers:
            if poller.first_401 is None:
                raise RuntimeError(f"{poller.url} still admits a revoked key after 5 s")
            times.append((poller.first_401 - sent) * 1000)
        return times
    finally:
        revoker.close()
        for poller in pollers:
            poller.connection.close()


async def revocations(
    edges: list[str], keys: list[tuple[str, str]], master: str
) -> list[list[float]]:
    """One list of milliseconds per edge, one entry per revoked key."""
    per_edge: list[list[float]] = [[] for _ in edges]
    for key_id, key in keys:
        times = await one_revocation(edges, edges[0], key, key_id, master)
        for i, ms in enumerate(times):
            per_edge[i].append(ms)
        await asyncio.sleep(0.01)
    return per_edge
