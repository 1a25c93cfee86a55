"""The dashboard reads its cookies in linear time, from a Cookie header of bounded size.

CPython's cookie unquoting (`http.cookies._unquote`, which Litestar's parser calls) takes time
quadratic in a quoted value full of backslashes on the Pythons without the fix of
CVE-2024-7592: one 60 KiB cookie held the edge for seconds. These tests time nothing: the slow
function refuses to run, so a request that would reach it fails.
"""

from __future__ import annotations

import http.cookies

import litestar._parsers
import pytest
from litestar.testing import TestClient

from aitbc_api.dashboard.cookies import parse_cookies
from aitbc_api.dashboard.sessions import SessionStore
from aitbc_api.settings import Settings
from tests.unit.edge_apps import without_bus

BACKSLASHES = '"' + "\\" * 4000 + '"'  # a quoted value: the slow path's input


class Sessions(SessionStore):
    """The session store, as far as `GET /dashboard/` needs it: nobody is signed in."""

    def __init__(self) -> None:  # no bucket: nothing is stored
        self.asked: list[str | None] = []

    async def get(self, token: str | None) -> None:
        self.asked.append(token)


def never(*_: object) -> str:
    raise AssertionError("the quadratic cookie unquoting was called")


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> TestClient:  # type: ignore[type-arg]
    monkeypatch.setattr(http.cookies, "_unquote", never)
    monkeypatch.setattr(litestar._parsers, "unquote_cookie", never)
    app = without_bus(Settings(max_cookie_bytes=8192))
    app.state["dashboard_sessions"] = Sessions()
    return TestClient(app)  # not entered: no lifespan, so no NATS


def sessions(client: TestClient) -> Sessions:  # type: ignore[type-arg]
    store: Sessions = client.app.state["dashboard_sessions"]
    return store


def test_a_cookie_header_over_the_cap_is_refused_before_it_is_parsed(client: TestClient) -> None:  # type: ignore[type-arg]
    cookie = "aitbc_session=" + '"' + "\\" * (60 * 1024) + '"'
    page = client.get("/dashboard/", headers={"Cookie": cookie}, follow_redirects=False)
    assert page.status_code == 431 and page.headers["content-type"].startswith("text/html")
    assert "REQUEST_TOO_LARGE" in page.text and "8192 bytes" in page.text
    assert sessions(client).asked == []  # refused before any session was looked up


def test_cookies_under_the_cap_are_read_without_the_slow_unquoting(client: TestClient) -> None:  # type: ignore[type-arg]
    cookie = f"other={BACKSLASHES}; aitbc_session=token-1; aitbc_session=shadowed"
    page = client.get("/dashboard/", headers={"Cookie": cookie}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/dashboard/sign-in"
    assert sessions(client).asked == ["token-1"]  # the first of a name: the most specific path


def test_the_parser_splits_and_strips_and_never_interprets_escapes() -> None:
    header = ' a=1 ; b="x y"; a=2; junk; =v; c="\\"; d=""; e=%41'
    assert parse_cookies(header) == {"a": "1", "b": "x y", "c": "\\", "d": "", "e": "%41"}
    assert parse_cookies("") == {}
    assert parse_cookies("a=" + BACKSLASHES)["a"] == "\\" * 4000
