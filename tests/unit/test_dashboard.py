"""The dashboard's pure parts: session expiry, the usage chart, error wording."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from litestar import Request

from aitbc_api.dashboard.charts import HEIGHT, minute_chart, nice_ceiling
from aitbc_api.dashboard.error_pages import error_pages
from aitbc_api.dashboard.messages import SIGN_IN, explain
from aitbc_api.dashboard.sessions import Session, expired
from aitbc_api.dashboard.web import OWNER_OF_REQUEST, Cookies, render_with
from aitbc_contracts.usage import MinuteUsage
from aitbc_gate.errors import ApiError


def test_a_session_ends_when_idle_or_at_its_lifetime() -> None:
    session = Session(
        account_id="acc_1", key_id="key_1", key_hash="h", started=1000, seen=1500, digest="d"
    )
    assert not expired(session, 1500 + 60, idle=60, lifetime=600)
    assert expired(session, 1500 + 61, idle=60, lifetime=600)  # idle
    session.seen = 1599
    assert expired(session, 1601, idle=60, lifetime=600)  # active, but past its lifetime


def minute(at: datetime, admitted: int, limited: int = 0) -> MinuteUsage:
    return MinuteUsage(minute=at, requests=admitted + limited, admitted=admitted, limited=limited)


def test_the_chart_counts_each_minute_in_its_window_and_stacks_limited_on_admitted() -> None:
    end = datetime(2026, 1, 1, 12, 30, 20, tzinfo=UTC)
    usage = [
        minute(datetime(2026, 1, 1, 12, 30, tzinfo=UTC), 40, 20),  # the current minute
        minute(datetime(2026, 1, 1, 11, 31, tzinfo=UTC), 3),  # the first of the hour
        minute(datetime(2026, 1, 1, 11, 30, tzinfo=UTC), 99),  # just outside it
    ]
    chart = minute_chart(usage, end, 60, "Last hour", limit=60)
    assert (chart.requests, chart.admitted, chart.limited, chart.peak) == (63, 43, 20, 60)
    assert chart.first == datetime(2026, 1, 1, 11, 31, tzinfo=UTC)
    assert chart.last == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    assert [row.requests for row in chart.rows] == [60, 3]  # newest first
    assert chart.y_max == 100 and chart.limit_y == HEIGHT - 60
    # the last bar: admitted from the bottom to 40, limited from 40 to 60
    assert chart.admitted_path.endswith("M709.2 60.0h9.6V100.0h-9.6z")
    assert chart.limited_path == "M709.2 40.0h9.6V60.0h-9.6z"
    assert "63 requests, 43 admitted, 20 limited" in chart.summary


def test_an_empty_chart_draws_nothing_and_a_far_limit_no_line() -> None:
    end = datetime(2026, 1, 1, tzinfo=UTC)
    empty = minute_chart([], end, 1440, "Last 24 hours", limit=6000)
    assert (empty.requests, empty.admitted_path, empty.limited_path) == (0, "", "")
    assert empty.limit_y is None and empty.rows == []
    one = minute_chart([minute(end, 1)], end, 1440, "Last 24 hours", limit=6000)
    assert one.admitted_path == "M718.0 0.0h2.0V100.0h-2.0z"  # visible, inside the frame


def test_the_scale_reaches_a_limit_the_busiest_minute_came_near() -> None:
    end = datetime(2026, 1, 1, tzinfo=UTC)
    near = minute_chart([minute(end, 50)], end, 60, "Last hour", limit=60)
    assert near.y_max == 100 and near.limit_y == HEIGHT - 60  # not 50, below the limit
    tenth = minute_chart([minute(end, 600)], end, 60, "Last hour", limit=6000)
    assert tenth.y_max == 10000 and tenth.limit_y == HEIGHT - 60
    far = minute_chart([minute(end, 599)], end, 60, "Last hour", limit=6000)
    assert far.y_max == 1000 and far.limit_y is None and far.limit_off_scale
    assert not minute_chart([], end, 60, "Last hour", limit=None).limit_off_scale


def test_nice_ceilings() -> None:
    assert [nice_ceiling(n) for n in (1, 2, 3, 6, 11, 60, 61, 6000)] == [
        1, 2, 5, 10, 20, 100, 100, 10000,
    ]  # fmt: skip


def test_errors_are_told_in_plain_words() -> None:
    limited = ApiError(
        429, "RATE_LIMIT_EXCEEDED", "Rate limit of 60 requests per minute exceeded",
        {"Retry-After": "12"},
    )  # fmt: skip
    sentence, detail = explain(limited)
    assert "plan's limit" in sentence and "Try again in 12 seconds" in sentence
    assert detail == "Rate limit of 60 requests per minute exceeded"
    forbidden = ApiError(403, "FORBIDDEN", "sign in with the master key")
    assert "not a master key" in explain(forbidden, SIGN_IN)[0]
    unknown = ApiError(500, "SOMETHING_NEW", "internal detail")
    assert explain(unknown) == ("Something went wrong on our side. Please try again.", "")


def usage_page(limit: int, busiest: int) -> str:
    """The usage page's HTML, for an account whose busiest minute saw `busiest` requests."""
    end = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    usage = [minute(end, busiest)]
    owner = SimpleNamespace(account_id="acc_1", plan="free", plan_limit=limit, plan_windows="")
    response = render_with(
        "usage.html",
        {
            "owner": owner,
            "title": "Usage",
            "key": None,
            "keys": [],
            "limit": limit,
            "hour": minute_chart(usage, end, 60, "Last hour", limit),
            "day": minute_chart(usage, end, 1440, "Last 24 hours", limit),
        },
    )
    return response.content  # type: ignore[no-any-return]


def test_the_legend_names_the_limit_line_only_where_a_chart_draws_it() -> None:
    near = usage_page(limit=60, busiest=50)
    assert near.count('<line class="limit"') == 2
    assert 'class="swatch limit"' in near and "above this chart" not in near
    far = usage_page(limit=6000, busiest=3)  # the scale stops at 5: no line is drawn
    assert '<line class="limit"' not in far
    assert 'class="swatch limit"' not in far  # so the legend does not promise one
    assert far.count("The limit, 6000 a minute, is above this chart's scale.") == 2


def test_an_error_after_sign_in_keeps_the_signed_in_header() -> None:
    """A 429 on a signed-in page: the header shows the account and Sign out, not Sign in."""
    limited = ApiError(429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded", {"Retry-After": "9"})
    show = error_pages(Cookies(always_secure=False))[ApiError]
    owner = SimpleNamespace(
        account_id="acc_0123456789abcdef",
        plan="free",
        notice="",
        session=SimpleNamespace(csrf_token="t" * 43),
    )
    scope = {"type": "http", "headers": [], OWNER_OF_REQUEST: owner}
    signed_in = show(Request(scope), limited).content  # type: ignore[arg-type]
    assert "acc_0123456789abcdef" in signed_in and "Sign out" in signed_in
    assert 'value="' + "t" * 43 + '"' in signed_in  # the sign-out form's CSRF token
    assert 'href="/dashboard/sign-in"' not in signed_in
    assert 'href="/dashboard/sign-up"' not in signed_in
    anonymous = show(Request({"type": "http", "headers": []}), limited).content  # type: ignore[arg-type]
    assert 'href="/dashboard/sign-in"' in anonymous and "Sign out" not in anonymous
