"""Budgets of attempts per client address (aitbc_gate.proxies says who that is), in
fixed windows, kept in this edge process's memory: invalid keys (brute force), sign-ups and
dashboard sign-ins. What is over budget is refused before it reaches the bus.

They are per edge process: N edges behind a load balancer admit N times each budget.
"""

from __future__ import annotations

import time

from aitbc_contracts.usage import WINDOW_SECONDS
from aitbc_gate import metrics
from aitbc_gate.errors import ApiError

EVERYONE = ""  # the key of a budget shared by every address


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
    `address_window`, and `overall` from every address together in each minute. Over either:
    429 with `code` and Retry-After, counted in aitbc_throttled_total."""

    def __init__(
        self, kind: str, code: str, per_address: int, address_window: float, overall: int
    ) -> None:
        self.kind, self.code = kind, code
        self.per_address = Throttle(per_address, address_window)
        self.overall = Throttle(overall)

    def take(self, address: str, now: float | None = None) -> None:
        """Counts one attempt from `address`, or raises the 429 that refuses it."""
        now = time.time() if now is None else now
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
