"""Deciding batches for owned partitions (answered by aitbc_usage.answering; usage queries:
aitbc_usage.queries)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable

import msgspec

from aitbc_contracts.messages import Code, Rejected
from aitbc_contracts.plans import PlanTable, as_table
from aitbc_contracts.subjects import partition_of
from aitbc_contracts.usage import (
    PARTITION_MOVED,
    WINDOW_SECONDS,
    Decide,
    DecideBatch,
    Decision,
    DecisionBatch,
    Settle,
    decide_batch_decoder,
    settlements_decoder,
)
from aitbc_contracts.windows import Windows
from aitbc_usage.metrics import SHADOW_REFUSALS, count_decisions
from aitbc_usage.plans import PlanBook

log = logging.getLogger("aitbc.usage")
encode = msgspec.json.Encoder().encode
MAX_BATCH = 10_000
MAX_LOOKUPS = 32  # plans asked of the keys service at once (each is a command it answers)
# Accounts of batches waiting apart for their plans, at most (made-up ones could pile up faster
# than the keys service answers); past it, PLANS_BUSY: their edge's fail policy decides.
MAX_PENDING_LOOKUPS = 20_000
PLANS_BUSY = "PLANS_BUSY"
_BUSY = "\x00busy"  # a plan no table holds: its items are refused with PLANS_BUSY
UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
Owners = dict[str, tuple[int | None, str | None]]  # account -> (partition counted in, plan)
WRONG_PARTITION = "WRONG_PARTITION"


class Deciding:
    """The counting authority for the accounts of its partitions."""

    def __init__(
        self,
        plans: PlanBook,
        plan_limits: dict[str, int] | PlanTable,
        partitions: tuple[int, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plans = plans  # which plan each account is on
        self.table = as_table(plan_limits)  # what each plan allows (reloaded: PLANS_FILE)
        # One set of windows per partition held: the unit of ownership, and of snapshots.
        self.windows = {partition: Windows() for partition in partitions}
        self.epochs: dict[int, int] = {}  # partition -> this holder's epoch (0: no leases)
        # Whether this process may decide for the partition now (its lease is fresh):
        self.serves: Callable[[int], bool] = lambda partition: partition in self.windows
        self.dirty: set[int] = set()  # partitions counted since the last snapshot
        self.clock = clock
        self._settled = asyncio.Event()  # set, and replaced, whenever a lease is settled
        self._lookups = asyncio.Semaphore(MAX_LOOKUPS)
        self._pending_lookups = 0  # accounts of the batches answered apart, to look up

    def _refuse(self, code: str, now: float) -> Decision:
        reset = (int(now) // WINDOW_SECONDS + 1) * WINDOW_SECONDS
        return Decision(admitted=False, limit=0, remaining=0, reset=reset, code=code)

    def answer(
        self, data: bytes, partition: int | None = None
    ) -> bytes | Coroutine[None, None, bytes]:
        """Decides a DecideBatch now when every plan it needs is known; otherwise a coroutine
        that asks the keys service for the others, all at once, and then decides (the caller
        runs it apart). `partition` is the subject's: an item whose account hashes elsewhere
        was misrouted and is refused (counting it here would split its counts). A batch of
        accounts never seen (made up, by whoever holds an edge's credentials) must not hold up
        the partition's other batches while they are asked about."""
        batch = self._batch(data)
        if isinstance(batch, bytes):
            return batch
        owners, missing = self._owners_of(batch.items, partition)
        if missing and self._pending_lookups + len(missing) > MAX_PENDING_LOOKUPS:
            owners.update((account, (owners[account][0], _BUSY)) for account in missing)
        elif missing:
            self._pending_lookups += len(missing)  # given back by _after_lookups
            return self._after_lookups(batch.items, owners, missing, partition)
        return self._decided(batch.items, owners, partition)

    async def decide(
        self, data: bytes, partition: int | None = None
    ) -> bytes | Coroutine[None, None, bytes]:
        """`answer`, its plans looked up first: the answer, or when a refusal must first wait
        for leases to be settled, a coroutine that gives it then."""
        batch = self._batch(data)
        if isinstance(batch, bytes):
            return batch
        owners, missing = self._owners_of(batch.items, partition)
        if missing:
            owners = self._again(owners, await self._look_up(missing), partition)
        return self._decided(batch.items, owners, partition)

    def _batch(self, data: bytes) -> DecideBatch | bytes:
        """The batch, or the encoded refusal of a malformed or oversized one."""
        try:
            batch = decide_batch_decoder.decode(data)
        except msgspec.MsgspecError as exc:
            log.warning("refused a malformed decision batch: %s", exc)
            return encode(Rejected(Code.VALIDATION_ERROR, f"malformed decision batch: {exc}"))
        if len(batch.items) > MAX_BATCH:
            return encode(Rejected(Code.VALIDATION_ERROR, f"at most {MAX_BATCH} items a batch"))
        return batch

    def _owners_of(
        self, items: list[Decide], partition: int | None
    ) -> tuple[Owners, dict[str, str]]:
        """Once per account: the partition it is counted in here and its plan if known; and
        those to ask the keys service about (with the edge's plan, if it cannot answer)."""
        owners: Owners = {}
        missing: dict[str, str] = {}
        for item in items:
            if (account := item.account_id) not in owners:
                owner = self._owner(account, partition)
                plan = self.plans.known(account) if owner is not None else None
                if owner is not None and plan is None:
                    missing[account] = item.plan
                owners[account] = (owner, plan)
        return owners, missing

    def _again(self, owners: Owners, looked_up: dict[str, str | None], part: int | None) -> Owners:
        """After an await: each account's partition read again (it may have moved meanwhile),
        with the plans looked up."""
        return {
            a: (self._owner(a, part), looked_up.get(a, plan)) for a, (_, plan) in owners.items()
        }

    async def _after_lookups(
        self,
        items: list[Decide],
        owners: Owners,
        missing: dict[str, str],
        partition: int | None,
    ) -> bytes:
        try:
            looked_up = await self._look_up(missing)
        finally:
            self._pending_lookups -= len(missing)
        if partition is not None and not self.serves(partition):  # handed over meanwhile
            return encode(Rejected(PARTITION_MOVED, "the partition moved; ask again"))
        reply = self._decided(items, self._again(owners, looked_up, partition), partition)
        return reply if isinstance(reply, bytes) else await reply

    async def _look_up(self, missing: dict[str, str]) -> dict[str, str | None]:
        plans = await asyncio.gather(*(self._plan(x, plan) for x, plan in missing.items()))
        return dict(zip(missing, plans, strict=True))

    def _decided(
        self, items: list[Decide], owners: Owners, partition: int | None
    ) -> bytes | Coroutine[None, None, bytes]:
        """Decides the whole batch with no await, atomically against one clock reading."""
        for item in items:
            if item.settles is not None and item.settles.account_id == item.account_id:
                self._settle(owners[item.account_id][0], item.settles)
        now = self.clock()
        decisions = [self._one(item, *owners[item.account_id], now) for item in items]
        waiting = self._waiting(items, owners, decisions, range(len(decisions)), now)
        epoch = self.epochs.get(partition, 0) if partition is not None else 0
        if waiting:
            return self._after_settling(items, owners, decisions, waiting, epoch, partition)
        count_decisions(partition, decisions)
        return encode(DecisionBatch(decisions, epoch))

    def settle(self, data: bytes, partition: int) -> None:
        """Settlements an edge published on its own (leases it no longer needs)."""
        try:
            settlements = settlements_decoder.decode(data)
        except msgspec.MsgspecError as exc:
            log.warning("refused malformed settlements: %s", exc)
            return
        for settle in settlements.items:
            self._settle(self._owner(settle.account_id, partition), settle)

    def _settle(self, partition: int | None, settle: Settle) -> None:
        if partition is not None and self.windows[partition].settle(
            settle.account_id, settle.granted, settle.unused, settle.reset
        ):
            self.dirty.add(partition)
            self._settled.set()  # wake the refusals waiting for units to come back
            self._settled = asyncio.Event()

    def _waiting(
        self,
        items: list[Decide],
        owners: Owners,
        decisions: list[Decision],
        indices: Iterable[int],
        now: float,
    ) -> list[int]:
        """The items refused while units of their account are lent out: they may yet come back.
        (A renewal never waits: its edge asks again when it needs to.)"""
        return [
            index
            for index in indices
            if not decisions[index].admitted
            and not items[index].renew
            and not decisions[index].code
            and (partition := owners[items[index].account_id][0]) is not None
            and self.windows[partition].unsettled(items[index].account_id, now) > 0
        ]

    async def _after_settling(
        self,
        items: list[Decide],
        owners: Owners,
        decisions: list[Decision],
        waiting: list[int],
        epoch: int,
        partition: int | None,
    ) -> bytes:
        """Decides the waiting items again each time a lease is settled, until they are
        admitted or no lease of their accounts is out (settled, or past due: used)."""
        while waiting:
            settled = self._settled
            wait = max(
                self.windows[owner].unsettled(items[index].account_id, self.clock())
                for index in waiting
                if (owner := owners[items[index].account_id][0]) is not None
            )
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(settled.wait(), wait)
            now = self.clock()
            for index in waiting:
                decisions[index] = self._one(items[index], *owners[items[index].account_id], now)
            waiting = self._waiting(items, owners, decisions, waiting, now)
        count_decisions(partition, decisions)
        return encode(DecisionBatch(decisions, epoch))

    def _owner(self, account_id: str, partition: int | None) -> int | None:
        """The partition the account is counted in here, or None: misrouted, or not owned."""
        owner = partition_of(account_id)
        if partition is not None and owner != partition:
            return None
        return owner if owner in self.windows else None

    async def _plan(self, account_id: str, edge_plan: str) -> str | None:
        async with self._lookups:  # so many at once from this process, however many asked
            try:
                return await self.plans.resolve(account_id)
            except Exception as exc:  # keys service unreachable: trust the edge's view for now
                log.warning("plan lookup failed (%s); using the edge's plan", exc)
                return edge_plan or None

    def _one(self, item: Decide, partition: int | None, plan: str | None, now: float) -> Decision:
        if partition is None:
            return self._refuse(WRONG_PARTITION, now)
        window = self.windows[partition]
        if plan is None:
            return self._refuse(UNKNOWN_ACCOUNT, now)
        if plan == _BUSY:
            return self._refuse(PLANS_BUSY, now)
        limits = self.table.plans.get(plan)
        if limits is None:
            log.error("no limit configured for plan %r", plan)
            return self._refuse(Code.VALIDATION_ERROR, now)
        if item.key_limit is not None and item.key_limit <= 0:
            return self._refuse(Code.VALIDATION_ERROR, now)
        if limits.windowed:
            decision = window.decide_windows(
                item.account_id, item.key_id, limits, item.key_limit, now, item.renew
            )
        else:
            decision = window.decide(
                item.account_id,
                item.key_id,
                limits.per_minute,
                item.key_limit,
                now,
                item.lease,
                item.renew,
            )
        if decision.admitted:
            self.dirty.add(partition)
        elif (item.shadow or limits.shadow) and not item.renew:
            return self._shadowed(window, item.account_id, decision, now)
        return decision

    def _shadowed(
        self, window: Windows, account_id: str, refusal: Decision, now: float
    ) -> Decision:
        """Shadow mode: a refusal is admitted, and says so, counting in no window (it was not
        allowed). While units of the account are lent it stays a refusal, and waits for them
        as an enforced one does (`_waiting`): they may come back and admit it for real."""
        if window.unsettled(account_id, now) > 0:
            return refusal
        SHADOW_REFUSALS[refusal.window].inc()
        return Decision(True, refusal.limit, 0, refusal.reset, window=refusal.window, shadow=True)
