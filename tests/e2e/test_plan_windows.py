"""A plans file's windows through a real edge, as a client sees them: a burst limit and a daily
quota in the headers and the 429s, and a plan in shadow mode that refuses nothing but says what
it would have refused (headers, usage)."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.dashboard import Dashboard
from tests.e2e.stack import BIN, Stack
from tests.e2e.test_rate_limits import early_in_a_minute, set_plan_to_pro, sign_up
from tests.e2e.usage_stream import usage_totals, wait_for

PLANS = """
[plans.free]
per_minute = 60
burst_per_second = 5
per_day = 12

[plans.pro]
per_minute = 600
burst_per_second = 3
shadow = true
"""
POLICIES = '"free";q=60;w=60, "free-burst";q=5;w=1, "free-day";q=12;w=86400'


@pytest.fixture(scope="module")
def windowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("windows")
    plans = root / "plans.toml"
    plans.write_text(PLANS)
    stack = Stack(root, extra_env={"PLANS_FILE": str(plans), "USAGE_TIMEOUT": "5"}).start()
    try:
        yield stack
    finally:
        stack.stop()


def burst(api: httpx.Client, key: str, n: int) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda _: api.get("/v1/jobs", headers={"X-API-Key": key}), range(n)))


def test_a_burst_is_refused_by_the_second_and_the_day_by_its_quota(windowed: Stack) -> None:
    with httpx.Client(base_url=windowed.api_url, timeout=10) as api:
        _, key = sign_up(api)
        early_in_a_minute(margin=15)
        responses = burst(api, key, 8)
        by_second: dict[int, list[int]] = {}
        for response in responses:
            assert response.headers["ratelimit-policy"] == POLICIES
            assert response.headers["x-ratelimit-mode"] == "exact"
            if response.status_code == 429:
                assert response.json()["error"]["message"] == (
                    "Rate limit of 5 requests per second exceeded"
                )
                assert response.headers["retry-after"] == "1"
                assert response.headers["ratelimit"].startswith('"free-burst";r=0;t=')
            reset = int(response.headers["x-ratelimit-reset"])
            by_second.setdefault(reset, []).append(response.status_code)
        assert any(429 in statuses for statuses in by_second.values())
        for statuses in by_second.values():  # a second that refused admitted exactly 5
            assert statuses.count(200) == 5 if 429 in statuses else statuses.count(200) <= 5
        admitted = sum(r.status_code == 200 for r in responses)
        time.sleep(1.1)
        later = []
        for _ in range(12 - admitted + 2):  # one at a time: the day runs out, not the second
            later.append(api.get("/v1/jobs", headers={"X-API-Key": key}))
            time.sleep(0.25)
    assert [r.status_code for r in later] == [200] * (12 - admitted) + [429, 429]
    midnight = (int(time.time()) // 86_400 + 1) * 86_400
    refused = later[-1]
    assert refused.json()["error"]["message"] == "Daily quota of 12 requests exceeded"
    assert int(refused.headers["x-ratelimit-reset"]) == midnight
    assert int(refused.headers["x-ratelimit-limit"]) == 12
    assert abs(int(refused.headers["retry-after"]) - (midnight - time.time())) < 5
    assert refused.headers["ratelimit"].startswith('"free-day";r=0;t=')


def test_shadow_mode_refuses_nothing_and_shows_what_it_would_have(windowed: Stack) -> None:
    with httpx.Client(base_url=windowed.api_url, timeout=10) as api:
        account, key = sign_up(api)
        set_plan_to_pro(windowed, api, account, key)
        wait_for(  # the change reaches the edge and the usage service by the key event log
            lambda: (
                api.get("/v1/jobs", headers={"X-API-Key": key}).headers["x-ratelimit-mode"]
                == "shadow"
            ),
            every=0.5,  # within the burst limit: the would-be refusals below are the burst's
        )
        time.sleep(1.0)  # a second of its own for the burst
        responses = burst(api, key, 8)
        assert [r.status_code for r in responses] == [200] * 8
        assert {r.headers["x-ratelimit-mode"] for r in responses} == {"shadow"}
        assert responses[0].headers["ratelimit-policy"] == ('"pro";q=600;w=60, "pro-burst";q=3;w=1')
        seconds = Counter(r.headers["x-ratelimit-reset"] for r in responses)  # the burst's
        over = sum(max(0, n - 3) for n in seconds.values())  # what the limit would refuse
        # The usage stream says which were over their limit (shadow_limited), all admitted.
        time.sleep(1.0)  # its questions below are not in the burst's second
        totals = wait_for(
            lambda: (t := usage_totals(api, key)).get("shadow_limited") == over and t,
            timeout=20,
            every=0.5,  # within the burst limit too
        )
    assert over >= 1 and totals and totals["limited"] == 0


def test_the_dashboard_shows_what_the_plan_allows_beyond_its_minute(windowed: Stack) -> None:
    person = Dashboard(windowed.api_url)
    person.sign_up()
    page = person.get("/dashboard/usage")
    assert page.status_code == 200
    assert "60 requests a minute for the account (5 a second, 12 a day (UTC))" in page.text


def test_a_plan_the_file_leaves_out_keeps_its_default_minute(windowed: Stack) -> None:
    """The file names free and pro only (as the README's example names free only): an
    enterprise account was refused a limit by the usage service on every request, its
    requests failing open (or closed) with an error logged each time."""
    env = {**windowed.env(), "PATH": str(BIN)}
    made = subprocess.run(
        [str(BIN / "aitbc"), "accounts", "create", "--plan", "enterprise", "--json"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    key = json.loads(made.stdout)["master_key"]
    with httpx.Client(base_url=windowed.api_url, timeout=10) as api:
        answer = api.get("/v1/jobs", headers={"X-API-Key": key})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-ratelimit-mode"] == "exact"
    assert answer.headers["x-ratelimit-limit"] == "6000"
    assert "no limit configured for plan" not in windowed.logs()
