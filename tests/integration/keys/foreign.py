"""Foreign messages on the key event stream, for the tests of what its readers and its relay
do with them (published on the `admin` fixture's connection), and the stream as stored."""

from __future__ import annotations

from nats.aio.client import Client

from aitbc_contracts.subjects import HASH_HEADER, KEY_EVENTS_STREAM
from tests.key_messages import Message, headers
from tests.key_stream import Stored


async def publish(admin: Client, subject: str, message: Message) -> None:
    data, found = message
    await admin.jetstream().publish(subject, data, headers=found, stream=KEY_EVENTS_STREAM)


async def every_message(admin: Client, since: int = 0) -> list[Stored]:
    """The stream's messages from sequence `since` on (0: from its first), in order."""
    js = admin.jetstream()
    info = await js.stream_info(KEY_EVENTS_STREAM)
    out = []
    for seq in range(max(since, info.state.first_seq), info.state.last_seq + 1):
        msg = await js.get_msg(KEY_EVENTS_STREAM, seq=seq)
        out.append(Stored(seq, dict(msg.headers or {}), msg.data or b""))
    return out


async def last_message(admin: Client) -> Stored:
    info = await admin.jetstream().stream_info(KEY_EVENTS_STREAM)
    [last] = await every_message(admin, since=info.state.last_seq)
    return last


def copied(genuine: Stored, position: int) -> Message:
    """A genuine message's bytes and hash under another position (without the relay's publish
    headers: its message id would make the stream drop the copy as a duplicate)."""
    return genuine.data, headers(position, genuine.headers[HASH_HEADER])
