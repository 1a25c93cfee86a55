"""Exact per-minute counting: the one rule, used by the usage service (the authority for its
accounts) and by an edge's local fallback limiter when the usage service cannot be reached.

Windows are calendar minutes. Only admitted requests count, so a client that keeps trying
while limited does not push its own window further away. Units lent to an edge as a lease
(aitbc_contracts.usage) count as used until the edge settles the lease and gives back what it
did not admit, so the count never falls below what was really admitted.
"""

from __future__ import annotations

from aitbc_contracts.usage import LEASE_DUE_SECONDS, LEASE_MIN_LIMIT, WINDOW_SECONDS, Decision


def lease_size(limit: int, free: int, wanted: int) -> int:
    """Lends at most half of what stays free above a tenth of the limit: far from the limit an
    edge gets what it asks, near it nothing is lent, so a refusal seldom has leases to wait for.
    A lease of one unit would save nothing, so none is smaller than two. Limits below
    LEASE_MIN_LIMIT are never lent."""
    if limit < LEASE_MIN_LIMIT:
        return 0
    size = min(wanted, (free - limit // 10) // 2)
    return size if size >= 2 else 0


class MinuteWindow:
    """Counts per account and per key for the current minute; pure, the clock is passed in."""

    def __init__(self) -> None:
        self.minute = -1
        self.accounts: dict[str, int] = {}
        self.keys: dict[str, int] = {}
        self.leased: dict[str, int] = {}  # account -> units lent and not yet settled
        self.lease_due: dict[str, float] = {}  # account -> when its latest lease falls due

    def _roll(self, now: float) -> int:
        minute = int(now // WINDOW_SECONDS)
        if minute != self.minute:
            if minute < self.minute:
                return self.minute  # a clock step back never reopens a closed window
            self.minute = minute
            self.accounts = {}
            self.keys = {}
            self.leased = {}
            self.lease_due = {}
        return minute

    def decide(
        self,
        account_id: str,
        key_id: str,
        account_limit: int,
        key_limit: int | None,
        now: float,
        lease: int = 0,
        renew: bool = False,
    ) -> Decision:
        """Admits one request or refuses it; when admitted and `lease` units are asked (never
        under a key's own limit), lends what lease_size allows beyond it. A renewal admits no
        request: it only lends, and is `admitted` when it did."""
        minute = self._roll(now)
        reset = (minute + 1) * WINDOW_SECONDS
        used = self.accounts.get(account_id, 0)
        remaining = account_limit - used
        limit = account_limit
        if key_limit is not None and key_limit < account_limit:
            key_used = self.keys.get(key_id, 0)
            remaining = min(remaining, key_limit - key_used)
            limit = key_limit
        if remaining <= 0:
            return Decision(admitted=False, limit=limit, remaining=0, reset=reset)
        admit = 0 if renew else 1
        lent = lease_size(limit, remaining - admit, lease) if lease and key_limit is None else 0
        self.accounts[account_id] = used + admit + lent
        if key_limit is not None and admit:
            self.keys[key_id] = self.keys.get(key_id, 0) + 1
        if lent:
            self.leased[account_id] = self.leased.get(account_id, 0) + lent
            self.lease_due[account_id] = now + LEASE_DUE_SECONDS
        return Decision(
            admitted=bool(admit or lent),
            limit=limit,
            remaining=remaining - admit,
            reset=reset,
            lease=lent,
        )

    def settle(self, account_id: str, granted: int, unused: int, reset: int) -> bool:
        """An edge's lease is over: `unused` of its `granted` units go back. A lease of another
        window, or one already counted as used (past due, or lent before a restart), changes
        nothing: what is given back is bounded by what is still lent."""
        outstanding = self.leased.get(account_id, 0)
        granted = min(granted, outstanding)
        if reset != (self.minute + 1) * WINDOW_SECONDS or granted <= 0:
            return False
        if granted == outstanding:
            del self.leased[account_id]
            del self.lease_due[account_id]
        else:
            self.leased[account_id] = outstanding - granted
        unused = max(0, min(unused, granted))
        self.accounts[account_id] = max(0, self.accounts.get(account_id, 0) - unused)
        return True

    def unsettled(self, account_id: str, now: float) -> float:
        """Seconds until the account's leases fall due, 0 when none is out: how long a refusal
        may wait for units to come back. A lease past due now counts as wholly used."""
        if account_id not in self.leased:
            return 0.0
        wait = self.lease_due[account_id] - now
        if wait <= 0 or int(now // WINDOW_SECONDS) != self.minute:
            del self.leased[account_id]
            del self.lease_due[account_id]
            return 0.0
        return wait

    def restore(
        self,
        minute: int,
        accounts: dict[str, int],
        keys: dict[str, int],
        leased: dict[str, int] | None = None,
        now: float = 0.0,
    ) -> None:
        """Counts saved before a restart or a handover: the same minute must not get a fresh
        budget. Lent units stay counted as used; those the save says were still lent (`leased`)
        may come back in a settlement until LEASE_DUE_SECONDS after `now`, as if just lent."""
        if minute >= self.minute:
            self.minute, self.accounts, self.keys = minute, dict(accounts), dict(keys)
            self.leased = {account: units for account, units in (leased or {}).items() if units}
            self.lease_due = dict.fromkeys(self.leased, now + LEASE_DUE_SECONDS)
