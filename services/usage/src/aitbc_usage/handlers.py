"""Bus handlers: decide batches for owned partitions, and answer usage queries."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.messages import Code, Rejected
from aitbc_contracts.ratelimit import MinuteWindow
from aitbc_contracts.subjects import partition_of
from aitbc_contracts.usage import (
    WINDOW_SECONDS,
    Decide,
    Decision,
    DecisionBatch,
    LastUsed,
    LastUsedQuery,
    UsageSeries,
    decide_batch_decoder,
    usage_query_decoder,
)
from aitbc_usage import store
from aitbc_usage.plans import PlanBook

log = logging.getLogger("aitbc.usage")
encode = msgspec.json.Encoder().encode
MAX_BATCH = 10_000
UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
WRONG_PARTITION = "WRONG_PARTITION"


class Deciding:
    """The counting authority for the accounts of its partitions."""

    def __init__(
        self,
        plans: PlanBook,
        plan_limits: dict[str, int],
        partitions: tuple[int, ...],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plans = plans
        self.plan_limits = plan_limits
        # One window per partition: the unit of ownership, and of snapshots.
        self.windows = {partition: MinuteWindow() for partition in partitions}
        self.dirty: set[int] = set()  # partitions counted since the last snapshot
        self.clock = clock

    def _refuse(self, code: str, now: float) -> Decision:
        reset = (int(now) // WINDOW_SECONDS + 1) * WINDOW_SECONDS
        return Decision(admitted=False, limit=0, remaining=0, reset=reset, code=code)

    async def decide(self, data: bytes) -> bytes:
        try:
            batch = decide_batch_decoder.decode(data)
        except msgspec.MsgspecError as exc:
            log.warning("refused a malformed decision batch: %s", exc)
            return encode(Rejected(Code.VALIDATION_ERROR, f"malformed decision batch: {exc}"))
        if len(batch.items) > MAX_BATCH:
            return encode(Rejected(Code.VALIDATION_ERROR, f"at most {MAX_BATCH} items a batch"))
        # Resolve unknown plans first (this may wait); then decide with no await in between,
        # so the whole batch is counted atomically against one clock reading.
        plans: dict[str, str | None] = {}
        for item in batch.items:
            if item.account_id not in plans:
                plans[item.account_id] = await self._plan(item)
        now = self.clock()
        decisions = [self._one(item, plans[item.account_id], now) for item in batch.items]
        return encode(DecisionBatch(decisions))

    async def _plan(self, item: Decide) -> str | None:
        known = self.plans.known(item.account_id)
        if known is not None:
            return known
        try:
            return await self.plans.resolve(item.account_id)
        except Exception as exc:  # keys service unreachable: trust the edge's view for now
            log.warning("plan lookup failed (%s); using the edge's plan", exc)
            return item.plan or None

    def _one(self, item: Decide, plan: str | None, now: float) -> Decision:
        partition = partition_of(item.account_id)
        window = self.windows.get(partition)
        if window is None:
            return self._refuse(WRONG_PARTITION, now)
        if plan is None:
            return self._refuse(UNKNOWN_ACCOUNT, now)
        limit = self.plan_limits.get(plan)
        if limit is None:
            log.error("no limit configured for plan %r", plan)
            return self._refuse(Code.VALIDATION_ERROR, now)
        if item.key_limit is not None and item.key_limit <= 0:
            return self._refuse(Code.VALIDATION_ERROR, now)
        decision = window.decide(item.account_id, item.key_id, limit, item.key_limit, now)
        if decision.admitted:
            self.dirty.add(partition)
        return decision


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
