"""Failing open, an edge admits its share of each limit: the limit over the edges alive, as the
edges' presence on the bus counts them (aitbc_gate.presence)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import msgspec

from aitbc_contracts.presence import ALIVE_FOR, ALIVE_FOR_MAX, EdgePresence
from aitbc_contracts.subjects import edge_presence_subject
from aitbc_contracts.usage import Decide, Decision
from aitbc_gate.decisions import DecisionBatcher, UsageUnavailable
from aitbc_gate.limits import RateLimiter, share
from aitbc_gate.presence import MAX_EDGES, Presence
from tests.unit.lease_window import T0


def test_a_share_is_the_limit_over_the_edges_rounded_up_and_never_zero() -> None:
    assert [share(60, n) for n in (1, 2, 3, 7)] == [60, 30, 20, 9]
    assert share(1, 5) == 1 and share(60, 0) == 60


class Away:
    async def decide(self, item: Decide) -> Decision:
        raise UsageUnavailable("no responders")


async def admitted(limiter: RateLimiter, key_limit: int | None = None) -> int:
    verdicts = [await limiter.check("acc_1", "key_1", "free", key_limit) for _ in range(100)]
    assert {v.mode for v in verdicts} == {"fail-open"}
    return sum(1 for v in verdicts if v.decision is not None and v.decision.admitted)


async def test_failing_open_an_edge_admits_its_share_of_the_account_and_of_the_key() -> None:
    batcher: DecisionBatcher = Away()  # type: ignore[assignment]
    edges = 2
    limiter = RateLimiter(batcher, {"free": 60}, True, clock=lambda: T0, edges=lambda: edges)
    assert await admitted(limiter) == 30
    limiter = RateLimiter(batcher, {"free": 60}, True, clock=lambda: T0, edges=lambda: edges)
    assert await admitted(limiter, key_limit=9) == 5
    edges = 1  # the other edge is gone: this one admits the rest of the limit
    assert await admitted(limiter) == 55


class Bus:
    """What the presence needs of NATS: publish, and whether it is connected."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, EdgePresence]] = []
        self.is_connected = True

    async def publish(self, subject: str, payload: bytes) -> None:
        self.sent.append((subject, msgspec.json.decode(payload, type=EdgePresence)))


def heard(presence: Presence, edge_id: str, alive_for: float = ALIVE_FOR) -> None:
    data = msgspec.json.encode(EdgePresence(edge_id, alive_for))
    asyncio.run(presence._heard(SimpleNamespace(data=data)))  # type: ignore[arg-type]


def test_the_edges_heard_in_time_are_counted_and_one_that_stops_at_once() -> None:
    now = [0.0]
    bus = Bus()
    presence = Presence(bus, clock=lambda: now[0])  # type: ignore[arg-type]
    assert presence.edges == 1
    heard(presence, "edge_b")
    heard(presence, "edge_c")
    heard(presence, presence.edge_id)  # its own heartbeat counts once, as itself
    asyncio.run(presence._heard(SimpleNamespace(data=b"{}")))  # type: ignore[arg-type]
    assert presence.edges == 3
    heard(presence, "edge_c", alive_for=0)  # stopped
    assert presence.edges == 2
    now[0] += ALIVE_FOR + 1  # edge_b died: not heard in time
    presence._beat()
    assert presence.edges == 1
    heard(presence, "edge_d", alive_for=10**9)  # claims to live for ever: bounded
    now[0] += ALIVE_FOR_MAX + 1
    presence._beat()
    assert presence.edges == 1


def test_while_its_own_connection_is_away_the_count_stands() -> None:
    now = [0.0]
    bus = Bus()
    presence = Presence(bus, clock=lambda: now[0])  # type: ignore[arg-type]
    heard(presence, "edge_b")
    bus.is_connected = False
    now[0] += 10 * ALIVE_FOR  # it hears no one, which says nothing of the others
    presence._beat()
    assert presence.edges == 2
    bus.is_connected = True
    presence._beat()  # back: edge_b has its time to be heard again
    assert presence.edges == 2
    now[0] += ALIVE_FOR + 1
    presence._beat()
    assert presence.edges == 1


async def test_an_edge_says_it_is_alive_and_says_when_it_stops() -> None:
    bus = Bus()
    presence = Presence(bus, every=0.01)  # type: ignore[arg-type]
    presence.nc.subscribe = _subscribe  # type: ignore[method-assign,assignment]
    presence.start()
    while len(bus.sent) < 2:
        await asyncio.sleep(0.01)
    await presence.stop()
    subject = edge_presence_subject(presence.edge_id)
    assert {s for s, _ in bus.sent} == {subject}
    assert bus.sent[0][1] == EdgePresence(presence.edge_id, ALIVE_FOR)
    assert bus.sent[-1][1] == EdgePresence(presence.edge_id, 0)


async def _subscribe(subject: str, cb: object) -> SimpleNamespace:
    async def unsubscribe() -> None:
        pass

    return SimpleNamespace(unsubscribe=unsubscribe)


def test_the_edges_remembered_are_bounded_whatever_their_holders_say() -> None:
    """Whoever holds the edge's credentials may say that edges are alive that are not (each
    counted edge lowers every edge's share, down to its floor); each id said was kept in
    memory for up to ALIVE_FOR_MAX, however many and however long they were."""
    presence = Presence(Bus(), clock=lambda: 0.0)  # type: ignore[arg-type]
    heard(presence, "edge_" + "x" * 100_000)
    assert presence.edges == 1  # no edge has such an id
    for n in range(3 * MAX_EDGES):
        heard(presence, f"edge_{n}")
    assert presence.edges == MAX_EDGES + 1
