"""Leases: units of an account's minute that its usage partition lent this edge.

Far from an account's limit, a decision may lend the edge a few units beyond the request it
answers (aitbc_contracts.usage). The edge admits the account's next requests from them without
asking, renews the lease ahead of need while it is in use, and LEASE_SECONDS after it was last
lent to settles it: it says how many it did not use, and those go back. One message then
serves a lease's worth of requests instead of one each, and the limit stays exact: lent units
count as used until they come back, and a refusal waits for them.

A renewal is asked for at half (of the units or of the time), so it has as long again to come
back; earlier when decisions take longer than that to come back (a saturated edge's event loop
is slow to answer: tens of ms), so that it still comes back before the lease runs out. It sizes
the lease to the account's pace on this edge: a lease that runs dry makes every request of the
account wait for one.
"""

from __future__ import annotations

import asyncio

from aitbc_contracts.subjects import partition_of
from aitbc_contracts.usage import LEASE_SECONDS, Decision, Settle

GROWTH = 8  # a lease grows to at most this many times the units a first decision asks for
RENEW_AHEAD = 2  # round trips: a renewal goes out while the lease still lasts this many


class Lease:
    __slots__ = (
        "expires", "full", "granted", "left", "limit", "remaining", "reset", "since", "taken"
    )  # fmt: skip

    def __init__(self, decision: Decision, now: float) -> None:
        self.granted = self.left = 0
        self.limit = decision.limit
        self.reset = decision.reset
        self.extend(decision, now)

    def extend(self, decision: Decision, now: float) -> None:
        """Adds what a decision lent (a first lease, or a renewal of this one)."""
        self.granted += decision.lease
        self.left += decision.lease
        self.full, self.taken, self.since = self.left, 0, now  # held, and admitted since, now
        # The decision's `remaining` counts the lent units as not yet used; beyond them:
        self.remaining = decision.remaining - decision.lease
        self.expires = min(now + LEASE_SECONDS, decision.reset)

    def settle(self, account_id: str, now: float) -> Settle | None:
        """What the usage service is told at the end, or None once its window is over (its
        counts are gone: nothing to give back)."""
        if now >= self.reset:
            return None
        return Settle(account_id, self.granted, self.left, self.reset)


class LeaseBook:
    """This edge's leases, one per account at most, in the order they were lent."""

    def __init__(self, units: int) -> None:
        self.units = units  # what a decision asks to be lent; a renewal, what the pace needs
        self.most = units * GROWTH
        self._leases: dict[str, Lease] = {}
        # accounts with a decision out that asked for a lease -> when it was asked, and the
        # requests waiting for it
        self._asking: dict[str, tuple[float, list[asyncio.Future[None]]]] = {}
        self.round_trip = 0.0  # how long a decision that lends takes to come back, smoothed
        self.ahead = LEASE_SECONDS / 2  # a renewal goes out with this much of a lease left

    def __len__(self) -> int:
        return len(self._leases)

    def _usable(self, account_id: str, now: float) -> Lease | None:
        lease = self._leases.get(account_id)
        return lease if lease is not None and lease.left > 0 and now < lease.expires else None

    def ready(self, account_id: str, now: float) -> bool:
        """A lease would admit the account's next request at once."""
        return self._usable(account_id, now) is not None

    def take(self, account_id: str, now: float) -> Decision | None:
        """Admits a request from the account's lease, or None: no lease, or it is used up or
        over (the next decision settles it)."""
        lease = self._usable(account_id, now)
        if lease is None:
            return None
        lease.left -= 1
        lease.taken += 1
        return Decision(True, lease.limit, lease.remaining + lease.left, lease.reset)

    def ask(self, account_id: str, now: float) -> tuple[int, Settle | None]:
        """For a decision of the account: the units to ask for (0 while another decision of
        it asks), and the settlement of the lease it replaces, if any."""
        lease = self._leases.pop(account_id, None)
        settles = lease.settle(account_id, now) if lease is not None else None
        if account_id in self._asking:
            return 0, settles
        self._asking[account_id] = (now, [])
        return self.units, settles

    def renewal_due(self, account_id: str, now: float) -> int:
        """After a request was admitted from the lease: the units to renew it with now, ahead of
        need, or 0. Ahead means when half of what it held at its last renewal is used, or half
        of its time; or earlier, when RENEW_AHEAD round trips take longer than that half.

        A renewal tops the lease up to what the account's pace since then would use in
        LEASE_SECONDS and while the renewal is out, at least `units` and at most `most`: a
        lease in little use does not grow. When its time runs out with units to spare and the
        account's requests come faster than a round trip, the renewal asks for the least that
        is lent, which extends its time: otherwise each of them would wait for a decision when
        it ends. A slower account's lease ends and is settled, so what it does not use goes
        back. Nonzero starts the renewal; `answered` ends it."""
        lease = self._leases.get(account_id)
        if lease is None or account_id in self._asking:
            return 0
        ahead = self.ahead
        running_out = now >= lease.expires - ahead
        if not running_out and lease.left > lease.full * ahead / LEASE_SECONDS:
            return 0
        pace = lease.taken * (LEASE_SECONDS + self.round_trip) / max(now - lease.since, 0.001)
        wanted = min(max(self.units, round(pace)), self.most) - lease.left
        if wanted < 2:  # none would be lent (aitbc_contracts.ratelimit.lease_size)
            queued = lease.taken * self.round_trip >= now - lease.since  # a request per trip
            if not (running_out and queued and lease.left < self.most):
                return 0
            wanted = 2
        self._asking[account_id] = (now, [])
        return wanted

    def lease_coming(self, account_id: str) -> asyncio.Future[None] | None:
        """While a decision of the account asks for a lease: a future done when it is back, so
        that a request arriving meanwhile can take from it rather than ask on its own."""
        asking = self._asking.get(account_id)
        if asking is None:
            return None
        future = asyncio.get_running_loop().create_future()
        asking[1].append(future)  # one each: a request cancelled while waiting cancels only its own
        return future

    def answered(self, account_id: str, decision: Decision | None, now: float) -> None:
        """The decision that asked, or renewed, has come back (None: it failed); keeps what it
        lent: a renewal adds to the lease in use, which is settled as one when it ends."""
        asked_at, waiting = self._asking.pop(account_id, (None, []))
        if asked_at is not None and decision is not None:  # a failure's time says nothing
            self.round_trip += (max(now - asked_at, 0.0) - self.round_trip) / 8
            self.ahead = min(max(LEASE_SECONDS / 2, RENEW_AHEAD * self.round_trip), LEASE_SECONDS)
        if decision is not None and decision.lease > 0 and decision.admitted:
            lease = self._leases.pop(account_id, None)  # re-inserted: the order is lending's
            if lease is not None and lease.reset == decision.reset:
                lease.extend(decision, now)
            else:  # a first lease (or one of a window that is over: nothing to give back)
                lease = Lease(decision, now)
            self._leases[account_id] = lease
        for future in waiting:
            if not future.done():
                future.set_result(None)

    def due(self, now: float, every: bool = False) -> dict[int, list[Settle]]:
        """Takes out the leases that are over (`every`: all of them, when the edge stops), and
        their settlements by usage partition. Leases are kept in the order they were lent, all
        for the same time: the first that is not over ends the search."""
        settlements: dict[int, list[Settle]] = {}
        while self._leases:
            account_id, lease = next(iter(self._leases.items()))
            if now < lease.expires and not every:
                break
            del self._leases[account_id]
            settle = lease.settle(account_id, now)
            if settle is not None:
                settlements.setdefault(partition_of(account_id), []).append(settle)
        return settlements
