"""Which plan each account is on: a view of the key event log; misses asked of the keys service.

The book follows the log from now (aitbc_runtime.key_events.KeyEventReader), so it sees the
creation of few of the accounts it decides for: an account is learned from the keys service on
its first decision, and kept up to date by the events after that. This is why it takes the plan
from the events themselves rather than folding account states (aitbc_contracts.keys.evolve): a
plan change of an account whose creation it never saw must still take effect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aitbc_contracts import messages as m
from aitbc_contracts.events import AccountCreated, AnyEvent, PlanChanged
from aitbc_runtime.commands import KeysCommands

UNKNOWN_TTL = 5.0  # an unknown account is asked about again after this many seconds
# Unknown accounts remembered before those past their wait are forgotten: batches of decisions
# may name any number never seen, and each would otherwise stay in memory for good.
MAX_UNKNOWN = 10_000

# An account's plan as the keys service has it; None when there is no such account.
Lookup = Callable[[str], Awaitable[str | None]]


def keys_lookup(commands: KeysCommands) -> Lookup:
    """Asks the keys service for an account's plan (raises CommandFailed when it cannot)."""

    async def lookup(account_id: str) -> str | None:
        answer = await commands.send(m.GetAccount(account_id=account_id))
        if isinstance(answer, m.AccountView):
            return answer.plan
        if isinstance(answer, m.Rejected) and answer.code == m.Code.NOT_FOUND:
            return None
        raise RuntimeError(f"keys service answered {answer!r}")

    return lookup


class PlanBook:
    """account id -> plan. Events always win over a lookup answer that raced with them."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self.plans: dict[str, str] = {}
        self._versions: dict[str, int] = {}  # each account's last event applied
        self._pending: dict[str, asyncio.Future[str | None]] = {}
        self._unknown_until: dict[str, float] = {}
        self._resets = 0  # an answer asked for before a reset may predate what it forgot

    def process(self, event: AnyEvent, position: int) -> None:
        """An account created or its plan changed: takes effect on the next decision."""
        if not isinstance(event, AccountCreated | PlanChanged):
            return
        if self._versions.get(event.account_id, 0) >= event.version:
            return  # a redelivered or older event: the plan it names is not the latest
        self._versions[event.account_id] = event.version
        self.plans[event.account_id] = event.plan
        self._unknown_until.pop(event.account_id, None)

    def reset(self) -> None:
        """Plan changes may have passed unseen (a reconnect the reader could not resume from,
        a stream that contradicts what was read): ask the keys service again, and keep no
        answer asked for before."""
        self.plans.clear()
        self._versions.clear()
        self._unknown_until.clear()
        self._pending.clear()
        self._resets += 1

    def _remember_unknown(self, account_id: str) -> None:
        now = time.monotonic()
        if len(self._unknown_until) >= MAX_UNKNOWN:
            self._unknown_until = {x: t for x, t in self._unknown_until.items() if t > now}
            # Mostly fresh: a flood of made-up ids. Forgotten too (each costs a look-up again,
            # never memory), so that every sweep at least halves what it looks through.
            if len(self._unknown_until) > MAX_UNKNOWN // 2:
                self._unknown_until.clear()
        self._unknown_until[account_id] = now + UNKNOWN_TTL

    def known(self, account_id: str) -> str | None:
        return self.plans.get(account_id)

    async def resolve(self, account_id: str) -> str | None:
        """The plan, asking the keys service once for concurrent misses of the same account."""
        plan = self.plans.get(account_id)
        if plan is not None:
            return plan
        if self._unknown_until.get(account_id, 0.0) > time.monotonic():
            return None
        pending = self._pending.get(account_id)
        if pending is None:
            pending = asyncio.ensure_future(self._ask(account_id, self._resets))
            self._pending[account_id] = pending
        return await asyncio.shield(pending)

    async def _ask(self, account_id: str, resets: int) -> str | None:
        """The keys service's answer; kept unless the book was reset since it was asked for."""
        try:
            plan = await self._lookup(account_id)
        finally:
            if resets == self._resets:  # else the pending lookup is already a newer one's
                self._pending.pop(account_id, None)
        if resets != self._resets:
            return plan  # this decision takes it; the book asks again for the next
        if plan is None:
            self._remember_unknown(account_id)
            return None
        return self.plans.setdefault(account_id, plan)  # an event that came first wins
