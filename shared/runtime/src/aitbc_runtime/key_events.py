"""The one reader of the key event stream: every process that keeps a view of the key events
(the edge's auth cache, the usage service's plan book, the keys service's facts index) follows
the stream through it, so each message is decoded and verified in one place before any view
acts on it: its position must follow the last one taken and its hash continue the chain
(aitbc_contracts.live_chain, on aitbc_contracts.chain's rule).

The anchor. Verifying a chain needs a trusted point to start from, and a reader that follows
from now has none. Replaying the whole log would give one, but costs every process a read of
every event at each start. Instead the reader subscribes from the stream's LAST
message (DeliverPolicy.LAST, the stream bound by name) and anchors at the first message that is
sealed, that is whose `Aitbc-Hash` header is `link(its prev_hash, its bytes)`: normally that
last message, or, when the last message is foreign (a `{}`), the next event the relay
publishes. The anchor is applied like any event: the views have just been built from their
trusted sources, and an event given twice changes nothing. It is no more trusted than that:
should it be a forgery, the next genuine event contradicts it (another history, or the same
position with another hash), and the reader resyncs.

Outages. After a reconnect the reader goes on from the stream sequence after the last message
it was given (aitbc_runtime.follower.Follower, `resume`): what was published while it was away is
applied, in order and verified as ever, so a key revoked meanwhile is revoked in every view as
soon as the reader is back, whether or not the views' sources can be asked. It tells its owner
when the stream goes out of reach (`on_lost`) and when it has caught up again (`on_found`):
the edge's auth cache trusts its entries only for a bounded time in between. When the stream
no longer holds that message (purged past it, rebuilt), events may have passed unseen: every
view is reset, and the reader anchors again.

Resync. On positions missing, or a sealed event that contradicts what was taken (a fork), the
reader cannot tell which history is the log's: every view is reset (it asks its trusted source
again: the edge's cache the keys service, the plan book the keys service, the facts index the
database), the chain anchors at that message, and the message is not applied (the sources hold
it already: the relay publishes only what the database committed). A message that is neither
sealed nor continuing the chain is refused: logged (never its content), counted in `refused`
by problem and in `aitbc_key_events_refused_total` by reader, never applied, and the reader
goes on. A message on its subscription that the stream did not deliver (another process of
its role may have the server send one there: aitbc_runtime.follower) is refused unread.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import prometheus_client
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from aitbc_contracts.chain import describe
from aitbc_contracts.events import AnyEvent
from aitbc_contracts.keys import KeyEventView
from aitbc_contracts.live_chain import LiveChain, Verdict
from aitbc_contracts.subjects import KEY_EVENTS_STREAM, KEY_EVENTS_SUBJECTS
from aitbc_runtime.follower import Follower

log = logging.getLogger("aitbc.key_events")

REFUSED = prometheus_client.Counter(
    "aitbc_key_events_refused_total",
    "Messages on the key event stream a reader refused on verification (neither sealed nor "
    "continuing the chain: never applied), by reader (edge-auth-cache, keys-facts-index, "
    "usage-plan-events)",
    ["reader"],
)


class KeyEventReader:
    """Follows the key event stream from its last message on and gives each verified event to
    every view, in order. `refused` and `resyncs` count, by problem, the messages refused and
    the resyncs they caused. After a reconnect it resumes where it was; when it cannot (events
    may have passed unseen) the views are reset and the reader anchors again. `on_lost` is
    told when the stream goes out of reach, `on_found` when the reader has resumed and caught
    up (after a reset, the views' reset says it instead)."""

    def __init__(
        self,
        nc: NATS,
        views: Sequence[KeyEventView],
        name: str,
        *,
        on_lost: Callable[[], None] = lambda: None,
        on_found: Callable[[], None] = lambda: None,
    ) -> None:
        self.views = list(views)
        self.name = name  # a few known values: the label of its refusals
        self._refusals = REFUSED.labels(name)
        self.chain = LiveChain()
        self.refused: Counter[str] = Counter()
        self.resyncs: Counter[str] = Counter()
        self._follower = Follower(
            nc,
            KEY_EVENTS_SUBJECTS,
            self.on_message,
            name,
            self.reset,
            stream=KEY_EVENTS_STREAM,
            deliver_policy=DeliverPolicy.LAST,
            resume=True,
            on_lost=on_lost,
            on_found=on_found,
            on_foreign=self.on_foreign,
        )

    @property
    def ready(self) -> bool:
        return self._follower.ready.is_set()

    async def wait_ready(self) -> None:
        await self._follower.ready.wait()

    def on_message(self, msg: Msg) -> None:
        try:
            sequence: int | None = msg.metadata.sequence.stream
        except Exception:  # not a JetStream delivery: the log says so by its absence
            sequence = None
        self.receive(msg.data, msg.headers, sequence)

    def on_foreign(self, msg: Msg) -> None:
        """A message on its subscription that its mirror did not deliver (another process of
        its role had the server send it there): refused unread, whatever it holds."""
        self.refused["foreign"] += 1
        self._refusals.inc()
        log.warning(
            "%s refused a message on its subscription to the key event stream: not a delivery "
            "of %s", self.name, KEY_EVENTS_STREAM,
        )  # fmt: skip

    def receive(
        self, data: bytes, headers: Mapping[str, str] | None, sequence: int | None = None
    ) -> None:
        verdict = self.chain.take(data, headers)
        if verdict.kind == "apply":
            assert verdict.event is not None and verdict.position is not None
            self._apply(verdict.event, verdict.position)
        elif verdict.kind == "refuse":
            self.refused[verdict.problem] += 1
            self._refusals.inc()
            log.warning(
                "%s refused a message on the key event stream: %s",
                self.name,
                _at(verdict, sequence),
            )
        elif verdict.kind == "resync":
            self.resyncs[verdict.problem] += 1
            log.warning(
                "%s: the key event stream contradicts what it has taken (%s); views reset, "
                "anchored again there",
                self.name,
                _at(verdict, sequence),
            )
            self._reset_views()

    def _apply(self, event: AnyEvent, position: int) -> None:
        for view in self.views:
            try:
                view.process(event, position)
            except Exception:  # one view's bug must not stop the others, nor the stream
                log.exception("%s failed on event %s", type(view).__name__, event.event_id)

    def reset(self) -> None:
        """Events may have passed unseen (a reconnect it could not resume from): forget the
        anchor and every view."""
        self.chain = LiveChain()
        self._reset_views()

    def _reset_views(self) -> None:
        for view in self.views:
            try:
                view.reset()
            except Exception:
                log.exception("%s failed to reset", type(view).__name__)

    def start(self) -> None:
        self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()


def _at(verdict: Verdict, sequence: int | None) -> str:
    """Where and what, never the message's content."""
    return describe(verdict.as_break(sequence))[:500]
