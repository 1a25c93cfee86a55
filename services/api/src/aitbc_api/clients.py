"""Typed request/reply over NATS: the edge's only way to talk to the services."""

from __future__ import annotations

from datetime import datetime

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from aitbc_api.batching import Batcher
from aitbc_api.errors import ApiError, from_rejection
from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEYS_CHECK, KEYS_COMMANDS, USAGE_QUERY
from aitbc_contracts.usage import LastUsed, LastUsedQuery, UsageQuery, UsageSeries


def unavailable(service: str) -> ApiError:
    return ApiError(
        503, m.Code.SERVICE_UNAVAILABLE, f"The {service} service is unavailable; try again shortly"
    )


class KeysClient:
    """Auth checks and management commands, answered by any keys service in the queue group."""

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

    async def _request(self, subject: str, payload: bytes) -> bytes:
        try:
            reply = await self._nc.request(subject, payload, timeout=self._timeout)
        except (NatsError, TimeoutError) as exc:  # no responders, timeout, disconnected
            raise unavailable("keys") from exc
        return reply.data

    async def check(self, key_hash: str) -> m.KeyFacts | m.Rejected:
        """The cache misses of a burst leave together as one CheckKeys (aitbc_api.batching):
        a lone miss at once, more while earlier batches are out."""
        return await self._checks.submit(0, key_hash)

    async def check_many(self, key_hashes: list[str]) -> list[m.KeyFacts | m.Rejected]:
        """One reply per hash, in order. A message the keys service refused as a whole, or a
        reply that does not fit, is no answer for any of them: the service is unavailable."""
        data = await self._request(KEYS_CHECK, m.encoder.encode(m.CheckKeys(key_hashes)))
        try:
            reply = m.check_reply_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise unavailable("keys") from exc
        if isinstance(reply, m.Rejected) or len(reply.replies) != len(key_hashes):
            raise unavailable("keys")
        return reply.replies

    async def command(
        self, command: m.AnyCommand
    ) -> m.AccountView | m.KeyView | m.KeyList | m.KeyHistory | m.Rebuilt:
        # Past our timeout we answer 503: the keys service must then not apply the change.
        command = msgspec.structs.replace(command, answer_within_ms=round(self._timeout * 1000))
        data = await self._request(KEYS_COMMANDS, m.encoder.encode(command))
        try:
            reply = m.reply_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise unavailable("keys") from exc
        if isinstance(reply, m.Rejected):
            raise from_rejection(reply)
        return reply


_usage_reply: msgspec.json.Decoder[UsageSeries | LastUsed | m.Rejected] = msgspec.json.Decoder(
    UsageSeries | LastUsed | m.Rejected
)


class UsageClient:
    """Usage queries, answered by any usage service."""

    def __init__(self, nc: NATS, timeout: float) -> None:
        self._nc = nc
        self._timeout = timeout

    async def _ask(self, query: UsageQuery | LastUsedQuery) -> UsageSeries | LastUsed:
        try:
            reply = await self._nc.request(
                USAGE_QUERY, m.encoder.encode(query), timeout=self._timeout
            )
            answer = _usage_reply.decode(reply.data)
        except (NatsError, TimeoutError, msgspec.DecodeError) as exc:
            raise unavailable("usage") from exc
        if isinstance(answer, m.Rejected):
            raise from_rejection(answer)
        return answer

    async def series(self, query: UsageQuery) -> UsageSeries:
        answer = await self._ask(query)
        assert isinstance(answer, UsageSeries)
        return answer

    async def last_used(self, account_id: str) -> dict[str, datetime]:
        """Each key's last use; empty when the usage service cannot say (listing still works)."""
        try:
            answer = await self._ask(LastUsedQuery(account_id))
        except Exception:
            return {}
        return answer.keys if isinstance(answer, LastUsed) else {}
