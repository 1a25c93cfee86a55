"""A resuming follower of a mirror watches whether the mirror follows its source: one that has
heard nothing from it for SILENT is lost (a mirror whose source's leader was killed holds
nothing new until nats-server sets it up again, some 45 s later, with the connection fine),
and found once it follows again, caught up, and what it holds has been delivered
(aitbc_runtime.follower; the cluster faults show it on a real cluster)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aitbc_runtime.follower import Follower

SECOND = 1_000_000_000


class Mirror:
    """What stream_info says of a mirror: when it last heard from its source, its lag."""

    def __init__(self) -> None:
        self.active: int | None = SECOND // 2
        self.lag, self.last_seq = 0, 10
        self.is_mirror = True

    async def stream_info(self, name: str) -> Any:
        mirror = SimpleNamespace(active=self.active, lag=self.lag) if self.is_mirror else None
        return SimpleNamespace(mirror=mirror, state=SimpleNamespace(last_seq=self.last_seq))


def follower(told: list[str]) -> Follower:
    made = Follower(
        None,  # type: ignore[arg-type]  # the watch asks only the stream
        "aitbc.keys.events.>",
        lambda msg: None,
        "test",
        stream="AITBC_KEY_EVENTS",
        resume=True,
        on_lost=lambda: told.append("lost"),
        on_found=lambda: told.append("found"),
    )
    made._next = 11  # delivered up to sequence 10
    return made


def watch(made: Follower, mirror: Mirror) -> None:
    asyncio.run(made._watch_source(mirror))  # type: ignore[arg-type]


def test_a_mirror_that_hears_from_its_source_is_followed_as_it_is() -> None:
    told: list[str] = []
    made, mirror = follower(told), Mirror()
    watch(made, mirror)
    mirror.active = 4 * SECOND
    watch(made, mirror)
    mirror.is_mirror = False  # a stream of its own: nothing to watch
    watch(made, mirror)
    assert told == []


def test_a_silent_mirror_is_lost_until_it_follows_again_caught_up() -> None:
    told: list[str] = []
    made, mirror = follower(told), Mirror()
    mirror.active = -1  # its consumer on the source is being set up again
    watch(made, mirror)
    watch(made, mirror)
    assert told == ["lost"]  # once
    mirror.active, mirror.lag = 6 * SECOND, 0  # silent too
    watch(made, mirror)
    mirror.active, mirror.lag = SECOND // 10, 5  # hearing again, not caught up
    watch(made, mirror)
    assert told == ["lost"]
    mirror.lag = 0  # caught up, and nothing new to deliver
    watch(made, mirror)
    assert told == ["lost", "found"]


def test_found_only_once_what_the_mirror_caught_up_with_is_delivered() -> None:
    told: list[str] = []
    made, mirror = follower(told), Mirror()
    mirror.active = None
    watch(made, mirror)
    mirror.active, mirror.last_seq = SECOND // 10, 14  # four events came in with it
    watch(made, mirror)
    assert told == ["lost"]
    for sequence, pending in ((11, 3), (12, 2), (13, 1), (14, 0)):
        msg = SimpleNamespace(
            metadata=SimpleNamespace(
                stream="AITBC_KEY_EVENTS",
                sequence=SimpleNamespace(stream=sequence),
                num_pending=pending,
            )
        )
        made._seen = 0
        made._nc = SimpleNamespace(stats={"reconnects": 0})  # type: ignore[assignment]
        asyncio.run(made._deliver(msg))  # type: ignore[arg-type]
        assert told == (["lost", "found"] if pending == 0 else ["lost"])
