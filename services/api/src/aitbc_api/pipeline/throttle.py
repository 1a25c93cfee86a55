"""Brute force: an address that keeps presenting bad keys is refused before it reaches the bus."""

from __future__ import annotations

from aitbc_contracts.usage import WINDOW_SECONDS


class FailureThrottle:
    """Failed key checks per client address in the current minute, bounded in memory.

    Over `budget`, the address's keys that this edge does not already know are refused with
    429: guessing costs the guesser, not the keys service. Keys already in the auth cache
    still work, so one bad client behind a shared address does not lock the others out.
    """

    def __init__(self, budget: int, max_addresses: int = 100_000) -> None:
        self.budget = budget
        self.max_addresses = max_addresses
        self.minute = -1
        self.failures: dict[str, int] = {}

    def _roll(self, now: float) -> None:
        minute = int(now // WINDOW_SECONDS)
        if minute != self.minute:
            self.minute, self.failures = minute, {}

    def blocked(self, address: str, now: float) -> bool:
        self._roll(now)
        return self.failures.get(address, 0) >= self.budget

    def failed(self, address: str, now: float) -> None:
        self._roll(now)
        if address not in self.failures and len(self.failures) >= self.max_addresses:
            return  # a flood of addresses: stop tracking new ones rather than grow without end
        self.failures[address] = self.failures.get(address, 0) + 1

    def retry_after(self, now: float) -> int:
        return max(1, int((self.minute + 1) * WINDOW_SECONDS - now))
