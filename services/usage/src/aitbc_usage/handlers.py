"""Bus handlers: decide batches for owned partitions, and answer usage queries."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts.messages import Code, Rejected
from aitbc_contracts.ratelimit import MinuteWindow
from aitbc_contracts.subjects import partition_of, usage_decide_subject
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

    async def decide(self, data: bytes, partition: int | None = None) -> bytes:
        """Decides a DecideBatch. `partition` is the subject's: an item whose account hashes
        elsewhere was misrouted and is refused (counting it here would split its counts)."""
        try:
            batch = decide_batch_decoder.decode(data)
        except msgspec.MsgspecError as exc:
            log.warning("refused a malformed decision batch: %s", exc)
            return encode(Rejected(Code.VALIDATION_ERROR, f"malformed decision batch: {exc}"))
        if len(batch.items) > MAX_BATCH:
            return encode(Rejected(Code.VALIDATION_ERROR, f"at most {MAX_BATCH} items a batch"))
        # Once per account, not per item: its owning partition, then its plan (this may wait).
        # Then decide with no await in between, so the whole batch is counted atomically
        # against one clock reading.
        owners: dict[str, tuple[int | None, str | None]] = {}
        for item in batch.items:
            if item.account_id not in owners:
                owner = self._owner(item.account_id, partition)
                plan = await self._plan(item) if owner is not None else None
                owners[item.account_id] = (owner, plan)
        now = self.clock()
        decisions = [self._one(item, *owners[item.account_id], now) for item in batch.items]
        return encode(DecisionBatch(decisions))

    def _owner(self, account_id: str, partition: int | None) -> int | None:
        """The partition the account is counted in here, or None: misrouted, or not owned."""
        owner = partition_of(account_id)
        if partition is not None and owner != partition:
            return None
        return owner if owner in self.windows else None

    async def _plan(self, item: Decide) -> str | None:
        known = self.plans.known(item.account_id)
        if known is not None:
            return known
        try:
            return await self.plans.resolve(item.account_id)
        except Exception as exc:  # keys service unreachable: trust the edge's view for now
            log.warning("plan lookup failed (%s); using the edge's plan", exc)
            return item.plan or None

    def _one(self, item: Decide, partition: int | None, plan: str | None, now: float) -> Decision:
        if partition is None:
            return self._refuse(WRONG_PARTITION, now)
        window = self.windows[partition]
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


_UNAVAILABLE = encode(Rejected(Code.SERVICE_UNAVAILABLE, "deciding failed; try again"))


async def answer_decisions(
    nc: NATS, deciding: Deciding, partitions: tuple[int, ...]
) -> list[Subscription]:
    """Subscribes each owned partition's decide subject, with no queue group: a partition has
    exactly one owner, or its counts would split. Bare nats-py, not FastStream: FastStream's
    per-message consume path cost about as much as deciding a whole batch. One callback task
    per subscription: a partition's batches are decided in arrival order. Every request gets
    an answer, a Rejected at worst, so the edge never waits for a timeout."""

    def responder(partition: int) -> Callable[[Msg], Awaitable[None]]:
        async def respond(msg: Msg) -> None:
            try:
                reply = await deciding.decide(msg.data, partition)
            except Exception:
                log.exception("deciding a batch failed")
                reply = _UNAVAILABLE
            try:
                await msg.respond(reply)
            except Exception as exc:  # no reply subject, or the connection is closing
                log.warning("could not answer a decision batch: %s", exc)

        return respond

    return [
        await nc.subscribe(usage_decide_subject(partition), cb=responder(partition))
        for partition in partitions
    ]


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
