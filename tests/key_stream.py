"""The key event stream as it is stored, message by message (a test's ground truth)."""

from __future__ import annotations

from dataclasses import dataclass

import nats
from nats.js.errors import NotFoundError

from aitbc_contracts.subjects import KEY_EVENTS_STREAM
from aitbc_runtime.bus_access import BusAccess


@dataclass(frozen=True)
class Stored:
    sequence: int
    headers: dict[str, str]
    data: bytes


async def key_stream(access: BusAccess) -> list[Stored]:
    """Every message of the key event stream, in order; empty when there is no stream yet."""
    nc = await nats.connect(**access.options())
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(KEY_EVENTS_STREAM)
        except NotFoundError:
            return []
        if info.state.messages == 0:
            return []
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(KEY_EVENTS_STREAM, seq=seq)
            out.append(Stored(seq, msg.headers or {}, msg.data or b""))
        return out
    finally:
        await nc.close()
