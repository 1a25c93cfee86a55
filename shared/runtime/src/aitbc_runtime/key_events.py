"""The one reader of the key event stream: every process that keeps a view of the key events
(the edge's auth cache, the usage service's plan book, the keys service's facts index) follows
the stream through it, so each message is decoded and checked in one place before any view
acts on it (aitbc_contracts.keys.read_envelope)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from aitbc_contracts.keys import InvalidKeyEvent, KeyEventView, read_envelope
from aitbc_contracts.subjects import KEY_EVENTS_STREAM, KEY_EVENTS_SUBJECTS
from aitbc_runtime.bus import Follower

log = logging.getLogger("aitbc.key_events")


class KeyEventReader:
    """Follows the key event stream from now on and gives each event to every view, in order.

    A message that is not an event of the log is refused (logged and counted in `refused`),
    never given to a view. After a reconnect, events may have passed unseen: every view is
    reset."""

    def __init__(self, nc: NATS, views: Sequence[KeyEventView], name: str) -> None:
        self.views = list(views)
        self.refused = 0
        self._follower = Follower(
            nc, KEY_EVENTS_SUBJECTS, self.on_message, name, self.reset, KEY_EVENTS_STREAM
        )

    @property
    def ready(self) -> bool:
        return self._follower.ready.is_set()

    async def wait_ready(self) -> None:
        await self._follower.ready.wait()

    def on_message(self, msg: Msg) -> None:
        self.receive(msg.data, msg.headers)

    def receive(self, data: bytes, headers: dict[str, str] | None) -> None:
        try:
            event, position = read_envelope(data, headers)
        except InvalidKeyEvent as exc:
            self.refused += 1
            log.warning("refused a message on the key event stream: %s", exc)
            return
        for view in self.views:
            try:
                view.process(event, position)
            except Exception:  # one view's bug must not stop the others, nor the stream
                log.exception("%s failed on event %s", type(view).__name__, event.event_id)

    def reset(self) -> None:
        for view in self.views:
            view.reset()

    def start(self) -> None:
        self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()
