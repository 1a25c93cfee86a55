"""Auth checks over NATS: the hashes the auth cache misses, asked of any keys service.

The checks are the hot path's one question to the keys service, so they keep a request of
their own (CheckKeys, batched) rather than the command client's (aitbc_runtime.commands)."""

from __future__ import annotations

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEYS_CHECK
from aitbc_gate.batching import Batcher
from aitbc_gate.errors import unavailable
from aitbc_runtime import tracing


class KeyChecks:
    """Answered by any keys service in the queue group."""

    def __init__(self, nc: NATS, timeout: float, max_in_flight: int = 4) -> None:
        self._nc = nc
        self._timeout = timeout
        self._checks: Batcher[str, m.KeyFacts | m.Rejected] = Batcher(
            lambda _, key_hashes: self.check_many(key_hashes),
            1,  # one lane: any keys service answers any hash
            lambda _: unavailable("keys"),
            name="key_checks",
            max_batch=m.MAX_CHECK_BATCH,
            max_in_flight=max_in_flight,
        )

    async def check(self, key_hash: str) -> m.KeyFacts | m.Rejected:
        """The cache misses of a burst leave together as one CheckKeys (aitbc_gate.
        batching): a lone miss at once, more while earlier batches are out."""
        return await self._checks.submit(0, key_hash)

    async def check_many(self, key_hashes: list[str]) -> list[m.KeyFacts | m.Rejected]:
        """One reply per hash, in order. A message the keys service refused as a whole, or a
        reply that does not fit, is no answer for any of them: the service is unavailable."""
        if not self._nc.is_connected:  # no answer can come: say so now, not after the timeout
            raise unavailable("keys")
        payload = m.encoder.encode(m.CheckKeys(key_hashes))
        try:
            headers = tracing.headers() if tracing.enabled else None  # the batch's span
            data = (
                await self._nc.request(KEYS_CHECK, payload, timeout=self._timeout, headers=headers)
            ).data
        except (NatsError, TimeoutError) as exc:  # no responders, timeout, disconnected
            raise unavailable("keys") from exc
        try:
            reply = m.check_reply_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise unavailable("keys") from exc
        if isinstance(reply, m.Rejected) or len(reply.replies) != len(key_hashes):
            raise unavailable("keys")
        return reply.replies
