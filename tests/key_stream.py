"""The key event stream as it is stored, message by message (a test's ground truth).

The log itself is in the NATS account KEYLOG (read it as `keylog-admin`); every reader of the
system follows the mirror in its own account, which holds the same messages a moment later (read
the readers' as `auditor`, or the admin's as `admin`). `until_mirrored` waits for that moment."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import nats
from nats.js.errors import NotFoundError

from aitbc_contracts.subjects import KEY_EVENTS_STREAM
from aitbc_infra.nats_server import NatsServer
from aitbc_runtime.bus_access import BusAccess
from tests.bus_clients import connected


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


async def until_mirrored(
    server: NatsServer, stream: str = KEY_EVENTS_STREAM, within: float = 10.0
) -> None:
    """Until the readers' mirror of `stream` holds the log's last message: what a test reads
    (or has a reader read) right after a publish must not race the mirror."""
    async with (
        connected(server, "keylog-admin") as log,
        connected(server, "auditor") as mirror,
        asyncio.timeout(within),
    ):
        want = (await log.jetstream().stream_info(stream)).state.last_seq
        while (await mirror.jetstream().stream_info(stream)).state.last_seq < want:
            await asyncio.sleep(0.01)
