"""Plans: each one's windows (a calendar minute; optionally a second and a UTC day) and whether
its limits are only reported (shadow mode). One parser and validator for every process that
reads the plans file (PLANS_FILE, TOML):

    [plans.free]
    per_minute = 60
    burst_per_second = 10   # optional: requests in any one second
    per_day = 10000         # optional: requests in a UTC day
    shadow = false          # optional: decided and reported, never refused

Without a file, the plans are the defaults (free 60, pro 600, enterprise 6000 a minute),
changed or added to by PLAN_LIMITS; with one, a default plan it leaves out keeps its
minute. A `PlanTable` holds a process's plans and reloads the file (aitbc_runtime.plan_reload
says when): a file that does not validate leaves the plans as they were.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aitbc_contracts.usage import WINDOW_SECONDS, plan_limits_from_env

SECOND = 1
DAY = 86_400
FIELDS = ("per_minute", "burst_per_second", "per_day", "shadow")


class PlansError(ValueError):
    """A plans file that cannot be used; the message names the file, the plan and the field."""


@dataclass(frozen=True, slots=True)
class Plan:
    per_minute: int
    burst_per_second: int | None = None
    per_day: int | None = None
    shadow: bool = False
    # More than the minute to count: such a plan's decisions take the slower path. A field,
    # not a property: it is read on every decision.
    windowed: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        windowed = self.burst_per_second is not None or self.per_day is not None
        object.__setattr__(self, "windowed", windowed)

    def windows(self) -> list[tuple[int, int]]:
        """(limit, seconds) of each window, the minute first."""
        windows = [(self.per_minute, WINDOW_SECONDS)]
        if self.burst_per_second is not None:
            windows.append((self.burst_per_second, SECOND))
        if self.per_day is not None:
            windows.append((self.per_day, DAY))
        return windows


def beyond_the_minute(plan: Plan) -> str:
    """What a plan allows beyond its minute, in words for people ("" for nothing more)."""
    parts = []
    if plan.burst_per_second is not None:
        parts.append(f"{plan.burst_per_second} a second")
    if plan.per_day is not None:
        parts.append(f"{plan.per_day} a day (UTC)")
    if plan.shadow:
        parts.append("limits reported, not enforced (shadow mode)")
    return ", ".join(parts)


def _count(source: str, plan: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlansError(f"{source}: plan {plan!r}: {name} must be a whole number, not {value!r}")
    if value < 1:
        raise PlansError(f"{source}: plan {plan!r}: {name} must be at least 1, not {value}")
    return value


def _plan(source: str, name: str, table: Any) -> Plan:
    if not isinstance(table, dict):
        raise PlansError(f"{source}: plan {name!r} must be a table ([plans.{name}])")
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise PlansError(
            f"{source}: plan {name!r}: unknown field {unknown[0]!r} (known: {', '.join(FIELDS)})"
        )
    if "per_minute" not in table:
        raise PlansError(f"{source}: plan {name!r}: per_minute is required")
    shadow = table.get("shadow", False)
    if not isinstance(shadow, bool):
        raise PlansError(f"{source}: plan {name!r}: shadow must be true or false, not {shadow!r}")
    per_minute = _count(source, name, "per_minute", table["per_minute"])
    burst = table.get("burst_per_second")
    burst = None if burst is None else _count(source, name, "burst_per_second", burst)
    if burst is not None and burst > per_minute:
        raise PlansError(
            f"{source}: plan {name!r}: burst_per_second ({burst}) above per_minute "
            f"({per_minute}) could never be reached"
        )
    day = table.get("per_day")
    day = None if day is None else _count(source, name, "per_day", day)
    return Plan(per_minute, burst, day, shadow)


def parse_plans(text: str, source: str) -> dict[str, Plan]:
    """The plans of a plans file's text; `source` names it in errors."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlansError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"plans"})
    if unknown:
        raise PlansError(f"{source}: unknown table {unknown[0]!r} (plans go in [plans.<name>])")
    plans = document.get("plans")
    if not isinstance(plans, dict) or not plans:
        raise PlansError(f"{source}: no plans ([plans.<name>] with per_minute = N)")
    return {name: _plan(source, name, table) for name, table in plans.items()}


def read_plans(path: str) -> dict[str, Plan]:
    """The file's plans, and the defaults of those it leaves out (`omitted`)."""
    text = read_text(path)
    # An account's plan is one of the log's (aitbc_contracts.events.Plan), whatever the file
    # names: one it leaves out keeps its default minute rather than have every request of its
    # accounts refused by the usage service (no limit for the plan) and fail open or closed.
    return {**default_plans({}), **parse_plans(text, path)}


def omitted(path: str) -> list[str]:
    """The plans the file at `path` does not name, which keep their default minute."""
    return sorted(set(default_plans({})) - set(parse_plans(read_text(path), path)))


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as file:
            return file.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlansError(f"{path}: cannot be read: {exc}") from None


def default_plans(env: Mapping[str, str] | None = None) -> dict[str, Plan]:
    """The plans without a file: the default minute limits, as PLAN_LIMITS changes them."""
    return {name: Plan(limit) for name, limit in plan_limits_from_env(env).items()}


def as_table(plans: Mapping[str, int] | PlanTable) -> PlanTable:
    """A table of `plans`, or per-minute limits as plans of a minute only."""
    if isinstance(plans, PlanTable):
        return plans
    return PlanTable("", {name: Plan(limit) for name, limit in plans.items()})


class PlanTable:
    """A process's plans now. `plans` is replaced whole on a reload; `limits` (each plan's
    per-minute limit, for views that show it) is updated in place, so holders of it see the
    change. Reading it never fails: a file that does not validate keeps the old plans."""

    def __init__(self, path: str = "", plans: dict[str, Plan] | None = None) -> None:
        self.path = path
        self.plans: dict[str, Plan] = {}
        self.limits: dict[str, int] = {}
        self.generation = 0  # grows with each change: caches of derived values compare it
        self.mtime = self._mtime()
        self._use(plans if plans is not None else read_plans(path) if path else default_plans())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PlanTable:
        """PLANS_FILE's plans (raises PlansError when it does not validate), else the defaults
        with PLAN_LIMITS."""
        env = os.environ if env is None else env
        path = env.get("PLANS_FILE", "").strip()
        return cls(path) if path else cls("", default_plans(env))

    def _mtime(self) -> float:
        try:
            return os.stat(self.path).st_mtime if self.path else 0.0
        except OSError:
            return 0.0

    def _use(self, plans: dict[str, Plan]) -> None:
        self.plans = plans
        self.limits.clear()
        self.limits.update((name, plan.per_minute) for name, plan in plans.items())
        self.generation += 1

    def changed(self) -> bool:
        """The file's modification time moved since it was last read."""
        return bool(self.path) and self._mtime() != self.mtime

    def reload(self) -> bool:
        """Reads the file again: whether the plans changed. Raises PlansError (the plans stay
        as they were) when it does not validate."""
        if not self.path:
            return False
        self.mtime = self._mtime()
        plans = read_plans(self.path)
        if plans == self.plans:
            return False
        self._use(plans)
        return True
