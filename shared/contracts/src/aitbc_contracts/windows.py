"""Exact counting of every window of a plan: the calendar minute (aitbc_contracts.ratelimit,
per account and per key with a limit of its own), and, for plans that have them, the current
second (a burst limit) and the UTC day (a daily quota), per account.

A request is admitted only if every window has room, and then counts in all of them. A refusal
names the window that refused; when several are full, the longest of them (its reset is the
one a client must wait for). An admitted request reports the window closest to refusing: the
one with the fewest requests left, the longer one on a tie.

Plans with a second or a day are never lent units (leases): a lease counts in the minute only,
and the second would end before most leases do. Their decisions are taken one by one, as the
decisions of limits below LEASE_MIN_LIMIT are. Plans with only a minute take
MinuteWindow.decide unchanged.
"""

from __future__ import annotations

from aitbc_contracts.plans import DAY, SECOND, Plan
from aitbc_contracts.ratelimit import MinuteWindow
from aitbc_contracts.usage import WINDOW_SECONDS, Decision


class Windows(MinuteWindow):
    """A partition's counts: the minute's (inherited), the second's and the day's."""

    def __init__(self) -> None:
        super().__init__()
        self.second = -1
        self.seconds: dict[str, int] = {}  # account -> admitted in the current second
        self.day = -1
        self.days: dict[str, int] = {}  # account -> admitted (and lent) in the current UTC day

    def _roll_longer(self, now: float) -> tuple[int, int]:
        second, day = int(now // SECOND), int(now // DAY)
        if second > self.second:  # a clock step back never reopens a closed window
            self.second, self.seconds = second, {}
        if day > self.day:
            self.day, self.days = day, {}
        return self.second, self.day

    def decide_windows(
        self,
        account_id: str,
        key_id: str,
        plan: Plan,
        key_limit: int | None,
        now: float,
        renew: bool = False,
    ) -> Decision:
        """Admits one request if every window of `plan` has room (a renewal asks for units,
        which such plans never lend: refused, it admits nothing)."""
        minute = self._roll(now)
        second, day = self._roll_longer(now)
        limit, used = plan.per_minute, self.accounts.get(account_id, 0)
        left = limit - used
        if key_limit is not None and key_limit < plan.per_minute:
            limit, left = key_limit, min(left, key_limit - self.keys.get(key_id, 0))
        # (left, seconds, limit, reset) of each window, the longest first
        windows = [(left, WINDOW_SECONDS, limit, (minute + 1) * WINDOW_SECONDS)]
        if plan.per_day is not None:
            day_left = plan.per_day - self.days.get(account_id, 0)
            windows.insert(0, (day_left, DAY, plan.per_day, (day + 1) * DAY))
        if plan.burst_per_second is not None:
            second_left = plan.burst_per_second - self.seconds.get(account_id, 0)
            windows.append((second_left, SECOND, plan.burst_per_second, second + 1))
        for window_left, seconds, window_limit, reset in windows:
            if window_left <= 0 or renew:
                return Decision(False, window_limit, 0, reset, window=seconds)
        self.accounts[account_id] = used + 1
        if key_limit is not None:
            self.keys[key_id] = self.keys.get(key_id, 0) + 1
        if plan.per_day is not None:
            self.days[account_id] = self.days.get(account_id, 0) + 1
        if plan.burst_per_second is not None:
            self.seconds[account_id] = self.seconds.get(account_id, 0) + 1
        # the fewest left; on a tie the first, the longer window
        closest = min(windows, key=lambda window: window[0])
        return Decision(True, closest[2], closest[0] - 1, closest[3], window=closest[1])

    def restore_longer(
        self, second: int, seconds: dict[str, int], day: int, days: dict[str, int]
    ) -> None:
        """The second's and the day's counts saved before a restart or a handover."""
        if second >= self.second:
            self.second, self.seconds = second, dict(seconds)
        if day >= self.day:
            self.day, self.days = day, dict(days)
