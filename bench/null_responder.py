"""The ceiling for a Python service on this bus: a bare nats-py responder that decodes each
request and answers it without doing any work (a fixed KeyFacts per hash; a DecisionBatch of
admits).

The auth-check and decision figures are reported as a fraction of what this reaches on the same
subjects shape, measured alternately with them: what the keys and usage services spend beyond
decoding and replying.
"""

from __future__ import annotations

import asyncio
import signal

import msgspec
import nats
import uvloop
from nats.aio.msg import Msg

from aitbc_contracts import messages as m
from aitbc_contracts.usage import Decision, DecisionBatch, decide_batch_decoder
from aitbc_runtime.bus_access import BusAccess

CHECK_SUBJECT = "bench.null.check"
DECIDE_PREFIX = "bench.null.decide"  # .<partition>, like usage_decide_subject

_encode = msgspec.json.Encoder().encode


async def serve(access: BusAccess) -> None:
    nc = await nats.connect(**access.options(), name="bench-null-responder")
    facts = m.KeyFacts(
        key_id="key_0000000000000000",
        account_id="acc_0000000000000000",
        kind="standard",
        plan="enterprise",
        revoked=False,
    )
    admitted = Decision(admitted=True, limit=100_000_000, remaining=99_999_999, reset=0)

    async def on_check(msg: Msg) -> None:
        checks = m.check_decoder.decode(msg.data)
        await msg.respond(m.encoder.encode(m.CheckedKeys([facts] * len(checks.key_hashes))))

    async def on_decide(msg: Msg) -> None:
        batch = decide_batch_decoder.decode(msg.data)
        await msg.respond(_encode(DecisionBatch([admitted] * len(batch.items))))

    await nc.subscribe(CHECK_SUBJECT, cb=on_check)
    await nc.subscribe(DECIDE_PREFIX + ".*", cb=on_decide)
    await nc.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await nc.drain()


if __name__ == "__main__":
    uvloop.run(serve(BusAccess.from_env()))  # NATS_URL, and NATS_CREDS
