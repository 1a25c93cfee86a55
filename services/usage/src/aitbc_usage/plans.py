"""Which plan each account is on: from the key event stream; misses asked of the keys service."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec

log = logging.getLogger("aitbc.usage.plans")

UNKNOWN_TTL = 5.0  # an unknown account is asked about again after this many seconds


class _PlanEvent(msgspec.Struct):
    type: str
    account_id: str
    plan: str | None = None


_decode_event = msgspec.json.Decoder(_PlanEvent).decode


class PlanBook:
    """account id -> plan. Events always win over a lookup answer that raced with them."""

    def __init__(self, lookup: Callable[[str], Awaitable[str | None]]) -> None:
        self._lookup = lookup
        self.plans: dict[str, str] = {}
        self._pending: dict[str, asyncio.Future[str | None]] = {}
        self._unknown_until: dict[str, float] = {}

    def learn(self, data: bytes) -> None:
        """Apply one key event: account created or plan changed."""
        try:
            event = _decode_event(data)
        except msgspec.DecodeError:
            log.warning("ignored an undecodable key event")
            return
        if event.plan is not None and event.type.startswith("account."):
            self.plans[event.account_id] = event.plan  # takes effect on the next decision
            self._unknown_until.pop(event.account_id, None)

    def forget(self) -> None:
        """Plan changes may have passed unseen (a reconnect): ask the keys service again."""
        self.plans.clear()
        self._unknown_until.clear()

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
            pending = asyncio.ensure_future(self._ask(account_id))
            self._pending[account_id] = pending
        return await asyncio.shield(pending)

    async def _ask(self, account_id: str) -> str | None:
        try:
            plan = await self._lookup(account_id)
        finally:
            self._pending.pop(account_id, None)
        if plan is None:
            self._unknown_until[account_id] = time.monotonic() + UNKNOWN_TTL
            return None
        return self.plans.setdefault(account_id, plan)  # an event that came first wins
