"""The plans file: what it may say, the errors that name what is wrong, and reloads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aitbc_contracts.plans import Plan, PlansError, PlanTable, omitted, parse_plans
from aitbc_runtime.plan_reload import RELOAD_FAILURES, reload

EXAMPLE = Path(__file__).parents[2] / "infra" / "plans.example.toml"


def test_a_plan_has_a_minute_and_optionally_a_second_a_day_and_shadow_mode() -> None:
    plans = parse_plans(
        """
        [plans.free]
        per_minute = 60
        burst_per_second = 10
        per_day = 10000
        shadow = true

        [plans.pro]
        per_minute = 600
        """,
        "plans.toml",
    )
    assert plans["free"] == Plan(60, 10, 10_000, shadow=True)
    assert plans["free"].windowed and plans["free"].windows() == [
        (60, 60),
        (10, 1),
        (10_000, 86_400),
    ]
    assert plans["pro"] == Plan(600) and not plans["pro"].windowed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[plans.free]\nper_minute = 'sixty'",
            "plans.toml: plan 'free': per_minute must be a whole",
        ),
        ("[plans.free]\nper_minute = 0", "plans.toml: plan 'free': per_minute must be at least 1"),
        ("[plans.free]\nburst_per_second = 5", "plans.toml: plan 'free': per_minute is required"),
        ("[plans.free]\nper_minute = 60\nper_hour = 5", "plan 'free': unknown field 'per_hour'"),
        ("[plans.free]\nper_minute = 60\nburst_per_second = 61", "burst_per_second (61) above"),
        ("[plans.free]\nper_minute = 60\nper_day = true", "plan 'free': per_day must be a whole"),
        ("[plans.free]\nper_minute = 60\nshadow = 'yes'", "plan 'free': shadow must be true or"),
        ("[plans.free\nper_minute = 60", "plans.toml: not valid TOML"),
        ("[limits.free]\nper_minute = 60", "plans.toml: unknown table 'limits'"),
        ("", "plans.toml: no plans"),
    ],
)
def test_a_bad_file_is_refused_with_what_is_wrong_and_where(text: str, message: str) -> None:
    with pytest.raises(PlansError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_plans(text, "plans.toml")


def test_without_a_file_the_plans_are_the_defaults_changed_by_plan_limits() -> None:
    table = PlanTable.from_env({"PLAN_LIMITS": "free=100,team=3000"})
    assert table.limits == {"free": 100, "pro": 600, "enterprise": 6000, "team": 3000}
    assert not any(plan.windowed or plan.shadow for plan in table.plans.values())


def test_the_example_file_is_valid() -> None:
    table = PlanTable.from_env({"PLANS_FILE": str(EXAMPLE)})
    assert table.limits == {"free": 60, "pro": 600, "enterprise": 6000}


def test_a_plan_the_file_leaves_out_keeps_its_default_minute(tmp_path: Path) -> None:
    """The README's example names free alone: pro and enterprise accounts keep a limit (none
    had one: the usage service refused to decide for them, on every request)."""
    path = tmp_path / "plans.toml"
    path.write_text("[plans.free]\nper_minute = 60\nburst_per_second = 10\n")
    table = PlanTable.from_env({"PLANS_FILE": str(path)})
    assert table.plans == {"free": Plan(60, 10), "pro": Plan(600), "enterprise": Plan(6000)}
    path.write_text("[plans.free]\nper_minute = 60\n[plans.enterprise]\nper_minute = 9000\n")
    assert table.reload() and table.limits == {"free": 60, "pro": 600, "enterprise": 9000}
    assert omitted(str(path)) == ["pro"]


def test_a_bad_file_at_start_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "plans.toml"
    path.write_text("[plans.free]\nper_minute = -1\n")
    with pytest.raises(PlansError, match=f"{path}: plan 'free'"):
        PlanTable.from_env({"PLANS_FILE": str(path)})
    with pytest.raises(PlansError, match="cannot be read"):
        PlanTable.from_env({"PLANS_FILE": str(tmp_path / "missing.toml")})


def test_a_reload_takes_a_changed_file_and_keeps_the_plans_when_it_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "plans.toml"
    path.write_text("[plans.free]\nper_minute = 60\n")
    table = PlanTable(str(path))
    limits, generation = table.limits, table.generation
    path.write_text("[plans.free]\nper_minute = 30\nper_day = 100\n")
    os.utime(path, (1, 1))  # a modification time of its own, however coarse the clock
    assert table.changed() and reload(table)
    assert table.plans["free"] == Plan(30, None, 100) and table.generation == generation + 1
    assert limits["free"] == 30  # the same dict, updated for those who hold it
    failures = RELOAD_FAILURES._value.get()
    path.write_text("[plans.free]\nper_minute = 'many'\n")
    assert not reload(table)
    assert table.plans["free"] == Plan(30, None, 100)
    assert RELOAD_FAILURES._value.get() == failures + 1
    assert not reload(table)  # the same bad file: refused again, nothing changes


def test_just_up_says_which_plans_it_uses_and_refuses_a_bad_file(tmp_path: Path) -> None:
    from aitbc_infra.layout import ConfigError
    from aitbc_infra.runner import plans_note

    assert plans_note({}).startswith("plans: the defaults (free 60, pro 600, enterprise 6000")
    changed = plans_note({"PLAN_LIMITS": "free=30,team=900"})
    assert changed.startswith("plans: PLAN_LIMITS over the defaults (free 30, pro 600, ")
    assert "team 900 requests a minute" in changed
    assert plans_note({"PLANS_FILE": str(EXAMPLE)}).endswith(
        "(enterprise, free, pro): reloaded when it changes, or on SIGHUP"
    )
    partial = tmp_path / "partial.toml"
    partial.write_text("[plans.pro]\nper_minute = 900\n")
    assert plans_note({"PLANS_FILE": str(partial)}).endswith(
        "(pro; enterprise, free: not in it, the default minute): reloaded when it changes, "
        "or on SIGHUP"
    )
    bad = tmp_path / "plans.toml"
    bad.write_text("[plans.free]\nper_minute = 60\nper_day = 0\n")
    with pytest.raises(ConfigError, match=f"PLANS_FILE: {bad}: plan 'free': per_day must be at"):
        plans_note({"PLANS_FILE": str(bad)})


def test_the_owners_views_say_what_a_plan_allows_beyond_its_minute() -> None:
    from aitbc_api.owners.key_manager import KeyManager, OwnerServices
    from aitbc_gate.auth import Principal

    table = PlanTable(
        "", {"free": Plan(60, 10, 10_000), "pro": Plan(600), "trial": Plan(60, shadow=True)}
    )
    services = OwnerServices(None, None, print, table.limits, plan_table=table)  # type: ignore[arg-type]

    def windows(plan: str) -> str:
        return KeyManager(
            services, Principal("key_1", "acc_1", "master", plan, None), "r"
        ).plan_windows

    assert windows("free") == "10 a second, 10000 a day (UTC)"
    assert windows("pro") == ""
    assert windows("trial") == "limits reported, not enforced (shadow mode)"


async def test_a_watched_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    import asyncio

    from aitbc_runtime.plan_reload import watching

    path = tmp_path / "plans.toml"
    path.write_text("[plans.free]\nper_minute = 60\n")
    table = PlanTable(str(path))
    async with watching(table, interval=0.02):
        path.write_text("[plans.free]\nper_minute = 60\nburst_per_second = 5\n")
        os.utime(path, (2, 2))
        async with asyncio.timeout(5):
            while table.plans["free"].burst_per_second != 5:
                await asyncio.sleep(0.01)


def test_plan_limits_that_are_no_numbers_are_left_out() -> None:
    from aitbc_contracts.usage import plan_limits_from_env

    limits = plan_limits_from_env({"PLAN_LIMITS": "free=30,pro=6²,team=x"})
    assert limits == {"free": 30, "pro": 600, "enterprise": 6000}
