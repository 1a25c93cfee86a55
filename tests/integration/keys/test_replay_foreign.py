"""`aitbc events replay` and `aitbc keys show`, run as the read-only `auditor`, on a key event
stream that holds foreign messages (put in the key log by its own admin: foreign.py) between
the relay's events: they check the chain as they read, skip what is not an event of the log and
say so on stderr in the words of `aitbc events verify`, and a break in the chain makes the
replay exit 1."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import msgspec
import nats
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_cli.main import run
from aitbc_contracts.events import AnyEvent
from aitbc_contracts.subjects import HASH_HEADER, POSITION_HEADER, key_event_subject
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import store
from aitbc_keys.outbox import OutboxRelay
from tests.integration.keys.foreign import last_message, publish
from tests.integration.keys.helpers import append_keys
from tests.key_messages import Chained, with_headers
from tests.key_stream import until_mirrored
from tests.unit.waiting import until


async def relay_all(engine: AsyncEngine, own_nats: NatsServer) -> None:
    writer = await nats.connect(**own_nats.options("keys-writer"))
    relay = OutboxRelay(engine, writer, poll_interval=30)
    relay.start()
    try:
        last = await store.last_position(engine)
        await until(lambda: relay.position == last, timeout=10, every=0.02)
    finally:
        await relay.stop()
        await writer.close()


async def aitbc(own_nats: NatsServer, *argv: str) -> tuple[int, str, str]:
    """The `aitbc` command as an auditor, in a thread (it runs its own event loop)."""
    assert own_nats.credentials is not None
    creds = str(own_nats.credentials.file("auditor"))
    out, err = io.StringIO(), io.StringIO()
    full = ["--nats-url", own_nats.url, "--creds", creds, *argv]
    code = await asyncio.to_thread(run, full, None, out, err)
    return code, out.getvalue(), err.getvalue()


def subject_of(event: AnyEvent) -> str:
    return key_event_subject(event.account_id, event.stream_id)


async def test_replay_and_show_skip_foreign_messages_and_name_a_fork(
    engine: AsyncEngine, own_nats: NatsServer, keylog: Client, history_of: Any
) -> None:
    first = await append_keys(engine, history_of, keys=2, events=2)  # positions 1..4
    await relay_all(engine, own_nats)
    last = await last_message(keylog)
    forger = Chained(int(last.headers[POSITION_HEADER]), last.headers[HASH_HEADER])
    key, other = first[0], first[2]  # the first key's creation, the second's
    await publish(keylog, "aitbc.keys.events.x", (b"{}", {}))  # stream sequence 5
    stray = msgspec.structs.replace(key, event_id="stray", version=3)
    await publish(
        keylog, subject_of(key), with_headers(forger.forged_next(stray), Aitbc_Hash="0" * 64)
    )
    forged = msgspec.structs.replace(other, event_id="forged", version=3)
    await publish(keylog, subject_of(other), forger.forged_next(forged))  # position 5, sequence 7
    more = await append_keys(engine, history_of, keys=1, events=2)  # positions 5, 6
    await relay_all(engine, own_nats)
    await until_mirrored(own_nats)  # what the auditor's commands read
    genuine = [r.data.decode() for r in await store.records_after(engine, 0)]
    assert len(genuine) == 6 and len(first + more) == 6

    # The whole stream: the chain itself is checked; the forged event that continued it cannot
    # be told from the log's until the genuine event of its position forks from it.
    code, out, err = await aitbc(own_nats, "events", "replay", "--json")
    assert code == 1, err
    printed = out.splitlines()
    assert [line for line in printed if line in genuine] == genuine
    assert [json.loads(line)["event_id"] for line in printed if line not in genuine] == ["forged"]
    assert "skipped a message that is not an event of the log: INSERTED at stream sequence 5" in err
    assert "skipped a message that is not an event of the log: ALTERED at position 5, " in err
    assert "the key event chain breaks: REORDERED at position 5, stream sequence 8" in err
    assert "2 message(s) skipped, 1 break(s) in the chain" in err

    # One key's subjects: each event checked alone; the one with a wrong hash is skipped.
    code, out, err = await aitbc(own_nats, "events", "replay", "--key", key.stream_id, "--json")
    assert code == 0, err
    assert out.splitlines() == genuine[:2]
    assert "ALTERED at position 5, stream sequence 6" in err and "1 message(s) skipped" in err

    code, out, err = await aitbc(own_nats, "keys", "show", key.stream_id, "--json")
    assert code == 0, err
    assert json.loads(out)["events"] == 2 and "ALTERED at position 5" in err
