"""Rate limits: exact decisions from the usage service (aitbc_gate.decisions), leases
that admit without asking, and the fail policy when the usage service cannot be asked."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal

import msgspec

from aitbc_contracts.plans import Plan, PlanTable, as_table
from aitbc_contracts.ratelimit import MinuteWindow
from aitbc_contracts.subjects import partition_of, usage_settle_subject
from aitbc_contracts.usage import LEASE_SECONDS, Decide, Decision, Settle, Settlements
from aitbc_gate import metrics
from aitbc_gate.decisions import DecisionBatcher, PartitionUnheld, UsageUnavailable
from aitbc_gate.leases import LeaseBook
from aitbc_gate.policies import Policies
from aitbc_runtime.process import cancel_and_wait, start_held

log = logging.getLogger("aitbc.api.limits")
_encode = msgspec.json.Encoder().encode

# shadow: decided exactly, nothing refused (the plan's or the key's limits are only reported)
Mode = Literal["exact", "fail-open", "fail-closed", "shadow"]


class Verdict(msgspec.Struct, frozen=True, gc=False):  # one per request: a cheap Struct
    decision: Decision | None  # None: fail-closed, no decision at all
    mode: Mode
    policy: str  # the name in RateLimit-Policy: the plan, or "key" for a key's own limit
    # Every window of a plan with more than the minute; None: the minute's alone (`policy`)
    policies: Policies | None = None


class RateLimiter:
    """Exact decisions from the usage service; when it is unreachable, the configured policy.

    Far from an account's limit, a decision lends this edge a lease (aitbc_gate.leases): the
    account's next requests are admitted from it without asking. It also remembers what each
    account's last exact decision left of its minute, so that the forwarder can tell when a
    request is all but sure to be admitted (`has_headroom`).

    Failing open, the local limiter admits this edge's share of each limit: the limit over the
    edges alive (`edges`, aitbc_gate.presence), rounded up, at least 1.
    """

    ROOMY_KEPT = 100_000  # accounts remembered; beyond, start over (a miss only costs speed)

    def __init__(
        self,
        batcher: DecisionBatcher,
        plan_limits: dict[str, int] | PlanTable,
        fail_open: bool,
        lease_units: int = 0,
        clock: Callable[[], float] = time.time,  # leases and minutes are of this time
        edges: Callable[[], int] = lambda: 1,  # how many edges share a fail-open limit
    ) -> None:
        self.batcher = batcher
        self.edges = edges
        self.clock = clock
        self.table = as_table(plan_limits)  # the plans (reloaded: PLANS_FILE)
        self.plan_limits = self.table.limits  # each plan's minute limit, kept up to date
        self.fail_open = fail_open
        self.local = MinuteWindow()  # the per-edge fallback: exact for this edge alone
        self.leases = LeaseBook(lease_units) if lease_units > 0 else None
        self._roomy: dict[str, int] = {}  # account with headroom -> the end of that window
        self._window_ends: dict[int, int] = {}
        self._policy_sets: dict[tuple[str, int | None], Policies] = {}
        self._policies_of = self.table.generation
        self._settling: asyncio.Task[None] | None = None
        self._renewals: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self.leases is not None:
            self._settling = asyncio.get_running_loop().create_task(self._settle_leases())

    async def stop(self) -> None:
        """Stops lending, and gives back what the leases did not use."""
        await cancel_and_wait(self._renewals)
        if self._settling is not None:
            await cancel_and_wait([self._settling])
            self._settling = None
            await self._publish_settlements(self.clock(), every=True)

    def _renew(self, account_id: str, key_id: str, plan: str, units: int) -> None:
        """Asks for more units for the account's lease in use, off any request's path."""
        start_held(self._renewals, self._renewal(account_id, key_id, plan, units))

    async def _renewal(self, account_id: str, key_id: str, plan: str, units: int) -> None:
        assert self.leases is not None
        decision: Decision | None = None
        try:
            decision = await self.batcher.decide(
                Decide(account_id, key_id, None, plan, units, renew=True)
            )
        except UsageUnavailable as exc:
            log.warning("usage service unavailable: %s", exc)
        finally:
            self.leases.answered(account_id, decision, self.clock())

    async def _settle_leases(self) -> None:
        """Settles leases as they end, so their unused units go back within LEASE_SECONDS
        and a refusal of the account elsewhere does not wait long for them."""
        while True:
            await asyncio.sleep(LEASE_SECONDS / 4)
            try:
                await self._publish_settlements(self.clock())
            except Exception as exc:  # NATS away: the lease falls due, and counts as used
                log.warning("could not settle leases: %s", exc)

    async def _give_back(self, settles: Settle) -> None:
        """A lease's settlement that went with a decision no holder took: on its own, or its
        unused units would count as used (a paused holder still takes settlements)."""
        try:
            await self._publish_settlements(self.clock(), also=settles)
        except Exception as exc:  # NATS away: the lease counts as used
            log.warning("could not settle a lease: %s", exc)

    async def _publish_settlements(
        self, now: float, every: bool = False, also: Settle | None = None
    ) -> None:
        """Settles the leases that are over (`every`: all), and `also`, one taken out already."""
        assert self.leases is not None
        due = self.leases.due(now, every)
        if also is not None:
            due.setdefault(partition_of(also.account_id), []).append(also)
        for partition, items in due.items():
            await self.batcher.nc.publish(
                usage_settle_subject(partition), _encode(Settlements(items))
            )

    def has_headroom(self, account_id: str, now: float) -> bool:
        """The account's last decision in this window left more than a tenth of its limit (and
        more than 10 requests): more than other edges and concurrent requests can use up."""
        return self._roomy.get(account_id, 0) > now

    def worth_speculating(self, account_id: str, now: float) -> bool:
        """A request of the account is all but sure to be admitted, and its decision takes a
        round trip (no lease admits it at once): worth sending upstream meanwhile."""
        return self.has_headroom(account_id, now) and not (
            self.leases is not None and self.leases.ready(account_id, now)
        )

    def _note(self, account_id: str, decision: Decision) -> None:
        if decision.remaining <= max(10, decision.limit // 10):
            self._roomy.pop(account_id, None)
            return
        if len(self._roomy) >= self.ROOMY_KEPT:
            self._roomy.clear()
        if len(self._window_ends) > 4:
            self._window_ends.clear()
        # one int object per window, not one per account: this map has an entry per account
        self._roomy[account_id] = self._window_ends.setdefault(decision.reset, decision.reset)

    def _policy(self, plan: str, key_limit: int | None) -> str:
        """The name in RateLimit-Policy: the plan, or "key" where the key's own limit is lower."""
        if key_limit is not None and key_limit < self.plan_limits.get(plan, 0):
            return "key"
        return plan

    def _policies(self, plan: str, limits: Plan, key_limit: int | None) -> Policies:
        """Every policy of a plan with more than the minute, made once per plan and key limit
        (and again when the plans change)."""
        if self._policies_of != self.table.generation or len(self._policy_sets) > 1024:
            self._policy_sets.clear()
            self._policies_of = self.table.generation
        policies = self._policy_sets.get((plan, key_limit))
        if policies is None:
            minute = self._policy(plan, key_limit)
            policies = self._policy_sets[(plan, key_limit)] = Policies(
                minute, plan, limits, key_limit
            )
        return policies

    async def check(
        self, account_id: str, key_id: str, plan: str, key_limit: int | None, shadow: bool = False
    ) -> Verdict:
        """The verdict on one request: from a lease at once, else from a decision. `shadow`:
        the key's limits are only reported (the plan's may be too: the plans say)."""
        args = (account_id, key_id, plan, key_limit, shadow)
        return self.leased(*args) or await self.decide(*args)

    def leased(
        self, account_id: str, key_id: str, plan: str, key_limit: int | None, shadow: bool = False
    ) -> Verdict | None:
        """The request admitted from the account's lease on this edge, if one is ready: no
        await, which is most requests of a busy account. None: `decide`. Plans with more than
        the minute are never lent; a lease of a plan that has become one since (the plans
        file changed) admits nothing more, and is settled when it ends."""
        leases = self.leases
        if leases is None or key_limit is not None:  # a key's own limit is never lent
            return None
        limits = self.table.plans.get(plan)
        if limits is not None and limits.windowed:
            return None
        now = self.clock()
        leased = leases.take(account_id, now)
        if leased is None:
            return None
        metrics.LEASED.inc()
        if renewal := leases.renewal_due(account_id, now):
            self._renew(account_id, key_id, plan, renewal)
        if shadow or (limits is not None and limits.shadow):
            return Verdict(leased, "shadow", plan)
        return Verdict(leased, "exact", plan)

    async def decide(
        self, account_id: str, key_id: str, plan: str, key_limit: int | None, shadow: bool = False
    ) -> Verdict:
        """The verdict of a decision: the usage service's, or the configured fallback's. While
        a decision of the account asks for a lease, the request waits for that instead."""
        policy = self._policy(plan, key_limit)
        limits = self.table.plans.get(plan)
        policies = None
        if limits is not None and (limits.windowed or limits.shadow):
            policies = self._policies(plan, limits, key_limit) if limits.windowed else None
            shadowed = shadow or limits.shadow
        else:
            shadowed = shadow
        leases, asked, settles = self.leases, 0, None  # asked: units this decision asks to lend
        if leases is not None and key_limit is None and policies is None:
            if (coming := leases.lease_coming(account_id)) is not None:
                await coming  # about as soon as a decision of its own would be back
                if (
                    verdict := self.leased(account_id, key_id, plan, key_limit, shadow)
                ) is not None:
                    return verdict
            asked, settles = leases.ask(account_id, self.clock())
        decision: Decision | None = None
        started = time.perf_counter()
        try:
            decision = await self.batcher.decide(
                Decide(account_id, key_id, key_limit, plan, asked, settles, shadow=shadow)
            )
            if not decision.code:
                metrics.DECIDED[decision.admitted].inc()
                if key_limit is None:  # a key's own limit says nothing of the account's
                    self._note(account_id, decision)
                mode: Mode = "shadow" if shadowed or decision.shadow else "exact"
                return Verdict(decision, mode, policy, policies)
            log.warning("usage service refused a decision: %s", decision.code)
        except UsageUnavailable as exc:
            log.warning("usage service unavailable: %s", exc)
            if settles is not None and isinstance(exc, PartitionUnheld):
                await self._give_back(settles)
        finally:
            metrics.DECISION_SECONDS.observe(time.perf_counter() - started)
            if asked:
                assert leases is not None
                leases.answered(account_id, decision, self.clock())
        return self._fallback(account_id, key_id, plan, key_limit, policy, policies, shadowed)

    def _fallback(
        self,
        account_id: str,
        key_id: str,
        plan: str,
        key_limit: int | None,
        policy: str,
        policies: Policies | None,
        shadowed: bool,
    ) -> Verdict:
        """No decision from the usage service: the fail policy's verdict. Failing open, the
        minute alone is counted (this edge's share of it): a plan's second and day are the
        usage service's to count. In shadow mode its refusal is admitted too."""
        if not self.fail_open:
            metrics.FAILED_CLOSED.inc()
            return Verdict(None, "fail-closed", policy, policies)
        limit = self.plan_limits.get(plan, min(self.plan_limits.values()))
        edges = self.edges()
        key_share = None if key_limit is None else share(key_limit, edges)
        decision = self.local.decide(
            account_id, key_id, share(limit, edges), key_share, self.clock()
        )
        metrics.FELL_BACK[decision.admitted].inc()
        if shadowed and not decision.admitted:
            decision = Decision(True, decision.limit, 0, decision.reset, shadow=True)
        return Verdict(decision, "fail-open", policy, policies)


def share(limit: int, edges: int) -> int:
    """One edge's part of a limit that `edges` edges admit from on their own: rounded up, so
    together they admit at most `edges - 1` more than the limit, and never 0."""
    return max(1, -(-limit // max(1, edges)))
