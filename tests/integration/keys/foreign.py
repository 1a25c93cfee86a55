"""Foreign messages on the key event log, for the tests of what its readers and its relay do
with them, and the log as stored.

They are published as `keylog-admin` (the `keylog` fixture): the log is in the NATS account
KEYLOG, where only its writer and that admin can put anything, and what
`admin` publishes on its subjects is stored nowhere (the mirror the readers follow has no
subjects). A foreign message is what a mistake, or the stolen credential, of the key log's
admin could put there; the mirror carries it to every reader a moment later."""

from __future__ import annotations

from nats.aio.client import Client

from aitbc_contracts.subjects import HASH_HEADER, KEY_EVENTS_STREAM
from tests.key_messages import Message, headers
from tests.key_stream import Stored


async def publish(keylog: Client, subject: str, message: Message) -> None:
    data, found = message
    await keylog.jetstream().publish(subject, data, headers=found, stream=KEY_EVENTS_STREAM)


async def every_message(nc: Client, since: int = 0) -> list[Stored]:
    """The stream's messages from sequence `since` on (0: from its first), in order: the log's
    on a `keylog-admin` connection, the mirror's on any other."""
    js = nc.jetstream()
    info = await js.stream_info(KEY_EVENTS_STREAM)
    out = []
    for seq in range(max(since, info.state.first_seq), info.state.last_seq + 1):
        msg = await js.get_msg(KEY_EVENTS_STREAM, seq=seq)
        out.append(Stored(seq, dict(msg.headers or {}), msg.data or b""))
    return out


async def last_message(nc: Client) -> Stored:
    info = await nc.jetstream().stream_info(KEY_EVENTS_STREAM)
    [last] = await every_message(nc, since=info.state.last_seq)
    return last


def copied(genuine: Stored, position: int) -> Message:
    """A genuine message's bytes and hash under another position (without the relay's publish
    headers: its message id would make the stream drop the copy as a duplicate)."""
    return genuine.data, headers(position, genuine.headers[HASH_HEADER])
