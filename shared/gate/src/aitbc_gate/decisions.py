"""Rate-limit decisions from the usage partition that holds the account, batched.

Batching is adaptive (aitbc_gate.batching): a lone request is never delayed, and under
load the bus cost per request shrinks.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError

from aitbc_contracts.messages import Rejected
from aitbc_contracts.subjects import USAGE_PARTITIONS, partition_of, usage_decide_subject
from aitbc_contracts.usage import (
    PARTITION_MOVED,
    Decide,
    DecideBatch,
    Decision,
    decision_batch_decoder,
)
from aitbc_gate.batching import Batcher
from aitbc_runtime import tracing

log = logging.getLogger("aitbc.api.limits")
_encode = msgspec.json.Encoder().encode
_rejected = msgspec.json.Decoder(Rejected).decode


class UsageUnavailable(Exception):
    """The usage service did not give a decision."""


class PartitionUnheld(UsageUnavailable):
    """No holder of the partition took the batch (none answered, or each said it moved or was
    deposed): what it carried was applied nowhere, so it may be sent again."""


class DecisionBatcher:
    """Decisions, batched per usage partition (see aitbc_gate.batching), from the
    partition's holder. Partitions move between usage processes (aitbc_usage.partitions): a
    batch that finds no holder, or one that says the partition moved, is sent again until
    HANDOVER (or the timeout); an answer with an epoch below one already seen for the
    partition came from a deposed holder and is ignored (fencing), and the batch is sent
    again. A partition without a holder for longer than HANDOVER is not waited for: its holder
    died, and until a survivor takes it over (USAGE_LEASE_SECONDS) the fail policy answers at
    once, as it does when the usage service is away."""

    RETRY_PAUSE = 0.02
    HANDOVER = 0.25  # a handover takes a few milliseconds; a takeover, the lease's time

    def __init__(self, nc: NATS, timeout: float, max_in_flight: int = 4) -> None:
        self.nc = nc
        self.timeout = timeout
        self.epochs = [0] * USAGE_PARTITIONS  # the highest epoch seen for each partition
        self._unheld_since = [0.0] * USAGE_PARTITIONS  # monotonic; 0: it had a holder
        self._batcher: Batcher[Decide, Decision] = Batcher(
            self._send,
            USAGE_PARTITIONS,
            _unavailable,
            name="decisions",
            max_in_flight=max_in_flight,
        )

    async def decide(self, item: Decide) -> Decision:
        return await self._batcher.submit(partition_of(item.account_id), item)

    async def _send(self, partition: int, items: list[Decide]) -> list[Decision]:
        subject, payload = usage_decide_subject(partition), _encode(DecideBatch(items))
        deadline = time.monotonic() + self.timeout
        headers = tracing.headers() if tracing.enabled else None  # the batch's span
        while True:
            try:
                remaining = max(deadline - time.monotonic(), 0.001)
                reply = await self.nc.request(subject, payload, timeout=remaining, headers=headers)
                batch = decision_batch_decoder.decode(reply.data)
            except NoRespondersError:
                pass  # no holder now: between two, or the last one died
            except msgspec.DecodeError:
                if _rejection(reply.data) != PARTITION_MOVED:
                    raise
            else:
                if batch.epoch >= self.epochs[partition]:
                    self.epochs[partition] = batch.epoch
                    self._unheld_since[partition] = 0.0
                    return batch.decisions
                log.warning("ignored an answer of a deposed holder of partition %d", partition)
            now = time.monotonic()
            since = self._unheld_since[partition] = self._unheld_since[partition] or now
            if now - since >= self.HANDOVER or now + self.RETRY_PAUSE >= deadline:
                raise PartitionUnheld(f"partition {partition} has no holder")
            await asyncio.sleep(self.RETRY_PAUSE)


def _unavailable(exc: Exception) -> UsageUnavailable:
    return (
        exc
        if isinstance(exc, UsageUnavailable)
        else UsageUnavailable(str(exc) or type(exc).__name__)
    )


def _rejection(data: bytes) -> str:
    try:
        return _rejected(data).code
    except msgspec.DecodeError:
        return ""
