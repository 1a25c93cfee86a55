"""Usage queries on the bus: per-minute series and last use, read from the aggregates."""

from __future__ import annotations

import logging

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.messages import Code, Rejected
from aitbc_contracts.usage import LastUsed, LastUsedQuery, UsageSeries, usage_query_decoder
from aitbc_usage import store

log = logging.getLogger("aitbc.usage")
encode = msgspec.json.Encoder().encode


class Querying:
    """Per-minute series and last use, read from the aggregates."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def query(self, data: bytes) -> bytes:
        try:
            query = usage_query_decoder.decode(data)
        except msgspec.MsgspecError as exc:
            log.warning("refused a malformed usage query: %s", exc)
            return encode(Rejected(Code.VALIDATION_ERROR, f"malformed usage query: {exc}"))
        ids = (query.account_id, getattr(query, "key_id", None) or "")
        if any("\x00" in x for x in ids):  # PostgreSQL's text cannot hold one: refused here
            log.warning("refused a malformed usage query: a NUL in an id")
            return encode(Rejected(Code.VALIDATION_ERROR, "malformed usage query: a NUL in an id"))
        try:
            if isinstance(query, LastUsedQuery):
                return encode(LastUsed(await store.last_used(self.engine, query.account_id)))
            minutes = await store.series(
                self.engine, query.account_id, query.start, query.end, query.key_id
            )
            return encode(UsageSeries(query.account_id, query.key_id, minutes))
        except Exception:
            log.exception("usage query failed")
            return encode(Rejected(Code.SERVICE_UNAVAILABLE, "usage query failed; try again"))
