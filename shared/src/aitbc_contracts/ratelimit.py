"""Exact per-minute counting: the one rule, used by the usage service (the authority for its
accounts) and by an edge's local fallback limiter when the usage service cannot be reached.

Windows are calendar minutes. Only admitted requests count, so a client that keeps trying
while limited does not push its own window further away.
"""

from __future__ import annotations

from aitbc_contracts.usage import WINDOW_SECONDS, Decision


class MinuteWindow:
    """Counts per account and per key for the current minute; pure, the clock is passed in."""

    def __init__(self) -> None:
        self.minute = -1
        self.accounts: dict[str, int] = {}
        self.keys: dict[str, int] = {}

    def _roll(self, now: float) -> int:
        minute = int(now // WINDOW_SECONDS)
        if minute != self.minute:
            if minute < self.minute:
                return self.minute  # a clock step back never reopens a closed window
            self.minute = minute
            self.accounts = {}
            self.keys = {}
        return minute

    def decide(
        self, account_id: str, key_id: str, account_limit: int, key_limit: int | None, now: float
    ) -> Decision:
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
        self.accounts[account_id] = used + 1
        if key_limit is not None:
            self.keys[key_id] = self.keys.get(key_id, 0) + 1
        return Decision(admitted=True, limit=limit, remaining=remaining - 1, reset=reset)

    def restore(self, minute: int, accounts: dict[str, int], keys: dict[str, int]) -> None:
        """Counts saved before a restart: the same minute must not get a fresh budget."""
        if minute >= self.minute:
            self.minute, self.accounts, self.keys = minute, dict(accounts), dict(keys)
