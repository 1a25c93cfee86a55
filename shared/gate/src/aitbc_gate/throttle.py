"""Budgets of attempts per client address (aitbc_gate.proxies says who that is), in
fixed windows, kept in this edge process's memory: invalid keys (brute force), sign-ups and
dashboard sign-ins. What is over budget is refused before it reaches the bus.

A budget per address is this edge's: a client whose requests N edges share gets up to N times
it. The overall budget of sign-ups or sign-ins is the whole system's (it bounds the dashboard
sessions every edge makes together): each edge admits its share, the budget over the edges
alive as their presence on the bus counts them (aitbc_gate.presence), the count the fail-open
limiter shares account limits by.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aitbc_contracts.usage import WINDOW_SECONDS
from aitbc_gate import metrics
from aitbc_gate.errors import ApiError

EVERYONE = ""  # the key of a budget shared by every address


def edge_share(budget: int, edges: int) -> int:
    """One edge's part of a budget all `edges` edges admit from on their own: rounded down, so
    that together they never admit more than it, and at least 1, so that no edge refuses
    everyone (beyond `budget` edges, the edges together admit one each)."""
    return max(1, budget // max(1, edges))


class Throttle:
    """Attempts per key (a client address) in the current window of `window` seconds, bounded
    in memory: `blocked` once `budget` were added in the window."""

    def __init__(
        self, budget: int, window: float = WINDOW_SECONDS, max_addresses: int = 100_000
    ) -> None:
        self.budget = budget
        self.window = window
        self.max_addresses = max_addresses
        self.current = -1  # the window's number
        self.counts: dict[str, int] = {}

    def _roll(self, now: float) -> None:
        current = int(now // self.window)
        if current != self.current:
            self.current, self.counts = current, {}

    def blocked(self, address: str, now: float) -> bool:
        self._roll(now)
        return self.counts.get(address, 0) >= self.budget

    def add(self, address: str, now: float) -> None:
        self._roll(now)
        if address not in self.counts and len(self.counts) >= self.max_addresses:
            return  # a flood of addresses: stop tracking new ones rather than grow without end
        self.counts[address] = self.counts.get(address, 0) + 1

    def retry_after(self, now: float) -> int:
        return max(1, int((self.current + 1) * self.window - now))


class FailureThrottle(Throttle):
    """Invalid keys per client address a minute. Over the budget, the address's keys that this
    edge does not already know are refused with 429, so guessing costs the guesser, not the
    keys service. Keys already in the auth cache still work, so one bad client behind a shared
    address does not lock the others out."""

    def failed(self, address: str, now: float) -> None:
        self.add(address, now)


class AttemptBudget:
    """Attempts of one kind (sign-ups, sign-ins): `per_address` per client address in each
    `address_window` on this edge, and this edge's share of `overall`, the whole system's
    budget from every address together in each minute (`edges`: how many edges are alive,
    this one included). Over either: 429 with `code` and Retry-After, counted in
    aitbc_throttled_total."""

    def __init__(
        self,
        kind: str,
        code: str,
        per_address: int,
        address_window: float,
        overall: int,
        edges: Callable[[], int] = lambda: 1,
    ) -> None:
        self.kind, self.code = kind, code
        self.per_address = Throttle(per_address, address_window)
        self.everyone = overall
        self.overall = Throttle(overall)
        self.edges = edges  # read at each attempt: the share follows edges coming and going

    def take(self, address: str, now: float | None = None) -> None:
        """Counts one attempt from `address`, or raises the 429 that refuses it."""
        now = time.time() if now is None else now
        # Every edge's windows are the same calendar minutes, so the shares add up within one.
        self.overall.budget = edge_share(self.everyone, self.edges())
        for throttle, key, whence in (
            (self.per_address, address, "from this address"),
            (self.overall, EVERYONE, "right now"),
        ):
            if throttle.blocked(key, now):
                metrics.THROTTLED.labels(self.kind).inc()  # rare: looked up here
                wait = throttle.retry_after(now)
                raise ApiError(
                    429,
                    self.code,
                    f"Too many {self.kind} attempts {whence}; try again in {wait} seconds",
                    headers={"Retry-After": str(wait)},
                )
        self.per_address.add(address, now)
        self.overall.add(EVERYONE, now)
