"""The keys service's facts index after a reset (the key event stream contradicted what its
reader had taken, or events passed unseen): what it held is not trusted for a moment longer."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import messages as m
from aitbc_keys.facts import FactsIndex, LiveFacts
from tests.integration.keys.helpers import commit, committed_key
from tests.key_histories import T0, H


async def test_a_reset_forgets_at_once_what_only_the_stream_said_and_reloads_the_log(
    engine: AsyncEngine,
) -> None:
    log = await committed_key(engine)
    index = FactsIndex()
    live = LiveFacts(engine, index)
    await live.load()
    log.key("acc_a", "key_2", H[2])  # a forged event that continued the chain: never stored
    forged, position = log.delivery[-1]
    live.process(forged, position)
    assert isinstance(index.facts(H[2], T0), m.KeyFacts)

    live.reset()
    live.reset()  # a second reason, while the first reload runs: the newest load wins
    assert index.facts(H[2], T0) is None and index.facts(H[1], T0) is None  # the database says
    log.revoke("key_1")  # genuine, arriving while both reload
    revoked, position = log.delivery[-1]
    await commit(engine, [(revoked.stream_id, revoked.version - 1, [revoked])])
    await asyncio.sleep(0)
    live.process(revoked, position)
    await live.stop()
    facts = index.facts(H[1], T0)
    assert isinstance(facts, m.KeyFacts) and facts.revoked
    assert index.facts(H[2], T0) is None
