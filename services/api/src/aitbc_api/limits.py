"""Rate-limit decisions: batched to the usage partition that owns the account, with a fallback.

Batching is adaptive: a request goes out at once when none is in flight for its partition;
while one is, arrivals gather and leave together when it returns (or at `max_batch` items).
A lone request is never delayed, and under load the bus cost per request shrinks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Literal

import msgspec
from nats.aio.client import Client as NATS

from aitbc_api import metrics
from aitbc_contracts.ratelimit import MinuteWindow
from aitbc_contracts.subjects import USAGE_PARTITIONS, partition_of, usage_decide_subject
from aitbc_contracts.usage import Decide, DecideBatch, Decision, decision_batch_decoder

log = logging.getLogger("aitbc.api.limits")
_encode = msgspec.json.Encoder().encode

Mode = Literal["exact", "fail-open", "fail-closed"]


class UsageUnavailable(Exception):
    """The usage service did not give a decision."""


class DecisionBatcher:
    def __init__(self, nc: NATS, timeout: float, max_batch: int = 1000) -> None:
        self.nc = nc
        self.timeout = timeout
        self.max_batch = max_batch
        self._waiting: list[list[tuple[Decide, asyncio.Future[Decision]]]] = [
            [] for _ in range(USAGE_PARTITIONS)
        ]
        self._in_flight = [False] * USAGE_PARTITIONS

    async def decide(self, item: Decide) -> Decision:
        partition = partition_of(item.account_id)
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting[partition].append((item, future))
        if not self._in_flight[partition]:
            self._send_next(partition)
        return await future

    def _send_next(self, partition: int) -> None:
        waiting = self._waiting[partition]
        batch, self._waiting[partition] = waiting[: self.max_batch], waiting[self.max_batch :]
        self._in_flight[partition] = True
        asyncio.get_running_loop().create_task(self._send(partition, batch))

    async def _send(
        self, partition: int, batch: list[tuple[Decide, asyncio.Future[Decision]]]
    ) -> None:
        try:
            metrics.inc("aitbc_decision_batches_total")
            payload = _encode(DecideBatch([item for item, _ in batch]))
            reply = await self.nc.request(
                usage_decide_subject(partition), payload, timeout=self.timeout
            )
            decisions = decision_batch_decoder.decode(reply.data).decisions
            if len(decisions) != len(batch):
                raise UsageUnavailable("decision batch of the wrong size")
            for (_, future), decision in zip(batch, decisions, strict=True):
                if not future.done():
                    future.set_result(decision)
        except Exception as exc:  # timeout, no responders, disconnected, a Rejected reply
            for _, future in batch:
                if not future.done():
                    future.set_exception(UsageUnavailable(str(exc) or type(exc).__name__))
        finally:
            self._in_flight[partition] = False
            if self._waiting[partition]:
                self._send_next(partition)


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision | None  # None: fail-closed, no decision at all
    mode: Mode
    policy: str  # the name in RateLimit-Policy: the plan, or "key" for a key's own limit


class RateLimiter:
    """Exact decisions from the usage service; when it is unreachable, the configured policy."""

    def __init__(
        self, batcher: DecisionBatcher, plan_limits: dict[str, int], fail_open: bool
    ) -> None:
        self.batcher = batcher
        self.plan_limits = plan_limits
        self.fail_open = fail_open
        self.local = MinuteWindow()  # the per-edge fallback: exact for this edge alone

    async def check(
        self, account_id: str, key_id: str, plan: str, key_limit: int | None
    ) -> Verdict:
        policy = (
            "key" if key_limit is not None and key_limit < self.plan_limits.get(plan, 0) else plan
        )
        try:
            decision = await self.batcher.decide(Decide(account_id, key_id, key_limit, plan))
            if not decision.code:
                metrics.inc("aitbc_ratelimit_decisions_total", f'outcome="{_outcome(decision)}"')
                return Verdict(decision, "exact", policy)
            log.warning("usage service refused a decision: %s", decision.code)
        except UsageUnavailable as exc:
            log.warning("usage service unavailable: %s", exc)
        if not self.fail_open:
            metrics.inc("aitbc_ratelimit_fallback_total", 'policy="fail-closed"')
            return Verdict(None, "fail-closed", policy)
        metrics.inc("aitbc_ratelimit_fallback_total", 'policy="fail-open"')
        limit = self.plan_limits.get(plan, min(self.plan_limits.values()))
        decision = self.local.decide(account_id, key_id, limit, key_limit, time.time())
        return Verdict(decision, "fail-open", policy)


def _outcome(decision: Decision) -> str:
    return "admitted" if decision.admitted else "limited"
