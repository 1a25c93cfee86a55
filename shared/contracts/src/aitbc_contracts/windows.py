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
        second = int(now // SECOND)
        if second > self.second:  # a clock step back never reopens a closed window
            self.second, self.seconds = second, {}
            day = second // DAY  # a day begins with a second
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
        which such plans never lend: refused, it admits nothing). Checked from the longest
        window to the shortest, so the first full one is the one to name."""
        minute = self._roll(now)
        second, day = self._roll_longer(now)
        limit = plan.per_minute
        used = self.accounts.get(account_id, 0)
        left = limit - used
        if key_limit is not None and key_limit < limit:
            limit, left = key_limit, min(left, key_limit - self.keys.get(key_id, 0))
        # the window closest to refusing so far: (requests left, its seconds, limit, reset)
        closest = (left, WINDOW_SECONDS, limit, (minute + 1) * WINDOW_SECONDS)
        per_day = plan.per_day
        day_used = 0
        if per_day is not None:
            day_used = self.days.get(account_id, 0)
            day_left = per_day - day_used
            if day_left <= 0 or renew:
                return Decision(False, per_day, 0, (day + 1) * DAY, "", 0, DAY)
            if day_left <= left:  # on a tie, the longer window
                closest = (day_left, DAY, per_day, (day + 1) * DAY)
        if left <= 0 or renew:
            return Decision(False, limit, 0, (minute + 1) * WINDOW_SECONDS)
        burst = plan.burst_per_second
        if burst is not None:
            second_used = self.seconds.get(account_id, 0)
            if second_used >= burst:
                return Decision(False, burst, 0, second + 1, "", 0, SECOND)
            if burst - second_used < closest[0]:
                closest = (burst - second_used, SECOND, burst, second + 1)
            self.seconds[account_id] = second_used + 1
        if per_day is not None:
            self.days[account_id] = day_used + 1
        self.accounts[account_id] = used + 1
        if key_limit is not None:
            self.keys[key_id] = self.keys.get(key_id, 0) + 1
        return Decision(True, closest[2], closest[0] - 1, closest[3], "", 0, closest[1])

    def restore_longer(
        self, second: int, seconds: dict[str, int], day: int, days: dict[str, int]
    ) -> None:
        """The second's and the day's counts saved before a restart or a handover."""
        if second >= self.second:
            self.second, self.seconds = second, dict(seconds)
        if day >= self.day:
            self.day, self.days = day, dict(days)
