"""Usage queries over NATS (an account's series, its keys' last use), answered by any usage
service within `USAGE_QUERY_TIMEOUT`."""

from __future__ import annotations

from datetime import datetime

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from aitbc_contracts import messages as m
from aitbc_contracts.subjects import USAGE_QUERY
from aitbc_contracts.usage import LastUsed, LastUsedQuery, UsageQuery, UsageSeries
from aitbc_gate.errors import from_rejection, unavailable
from aitbc_runtime import tracing

_usage_reply: msgspec.json.Decoder[UsageSeries | LastUsed | m.Rejected] = msgspec.json.Decoder(
    UsageSeries | LastUsed | m.Rejected
)


class UsageQueries:
    def __init__(self, nc: NATS, timeout: float) -> None:
        self._nc = nc
        self._timeout = timeout

    async def _ask(self, query: UsageQuery | LastUsedQuery) -> UsageSeries | LastUsed:
        try:
            reply = await self._nc.request(
                USAGE_QUERY,
                m.encoder.encode(query),
                timeout=self._timeout,
                headers=tracing.headers() if tracing.enabled else None,
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
