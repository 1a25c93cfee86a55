"""In a real browser: the dashboard works from the keyboard alone, its cookie is out of reach
of scripts and other sites, and a form posted from another site changes nothing."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.flows import create_key, row, sign_up
from tests.e2e.stack import Stack
from tests.key_scan import plaintext_keys

# The first test may install Chromium with apt-get (fixture setup counts toward the timeout).
pytestmark = pytest.mark.timeout(900)


def focused(page: Page, selector: str) -> bool:
    return bool(
        page.evaluate(
            "s => !!document.activeElement && document.activeElement.matches(s)", selector
        )
    )


def tab_to(page: Page, selector: str, presses: int = 60) -> None:
    """Presses Tab until the element is focused: it must be reachable from the keyboard."""
    page.wait_for_load_state()
    for _ in range(presses):
        if focused(page, selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} cannot be reached with the Tab key")


def test_everything_can_be_done_with_the_keyboard_alone(page: Page) -> None:
    page.goto("/dashboard/sign-up")
    page.keyboard.press("Tab")
    assert focused(page, "a.skip"), "the first Tab stop skips to the content"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert focused(page, "#name"), "after skipping, the form comes first"
    page.keyboard.type("Keyboard only")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("master key")

    tab_to(page, "button[data-copy]")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), "keyboard focus is visible"
    page.keyboard.press("Enter")
    expect(page.locator("#secret-status")).to_have_text("Copied to the clipboard.")
    master = page.evaluate("navigator.clipboard.readText()")
    tab_to(page, "a.button")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")

    tab_to(page, "#key-name")
    page.keyboard.type("kb")
    page.keyboard.press("Tab")
    assert focused(page, "#expires")
    page.keyboard.press("ArrowDown")  # "In 1 day"
    page.keyboard.press("ArrowDown")  # "In 7 days"
    page.keyboard.press("Tab")
    assert focused(page, "#rate-limit")
    page.keyboard.press("Enter")  # submits the form, as from any text field
    expect(page.get_by_role("heading", level=1)).to_contain_text("kb")
    expect(page.locator(".facts")).to_contain_text("Expires")

    tab_to(page, "header button[type=submit]")  # Sign out
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    assert focused(page, "#master_key"), "the sign-in form takes focus at once"
    page.keyboard.type(master)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/dashboard/keys$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")

    tab_to(page, 'a[aria-label="Revoke kb"]')
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Revoke “kb”?")
    tab_to(page, "button.danger")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("is revoked")


def test_the_session_cookie_is_out_of_reach_and_holds_no_key(
    context: BrowserContext, page: Page
) -> None:
    master = sign_up(page, "cookies")
    key_id, key = create_key(page, "probe")
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["aitbc_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert session["path"] == "/dashboard"  # never sent with API calls
    assert not session["secure"]  # plain HTTP here; Secure over HTTPS (tested in e2e)
    assert master not in session["value"] and key not in session["value"]
    assert all(plaintext_keys(c["value"]) == set() for c in cookies.values())
    assert page.evaluate("document.cookie") == ""
    page.goto("/dashboard/keys")
    expect(row(page, key_id)).to_contain_text("active")
    assert plaintext_keys(page.content()) == set()


class _Attacker(BaseHTTPRequestHandler):
    """Another site: its page posts a form to the dashboard as soon as it loads."""

    target = ""

    def do_GET(self) -> None:
        body = (
            "<!doctype html><title>Win a prize</title>"
            f'<form id="f" method="post" action="{self.target}/dashboard/keys">'
            '<input name="name" value="evil"><input name="csrf_token" value="guess"></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def attacker(stack: Stack) -> Iterator[str]:
    handler = type("Attacker", (_Attacker,), {"target": stack.api_url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # "localhost" and "127.0.0.1" are different sites to a browser.
    yield f"http://localhost:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_form_posted_from_another_site_is_refused(
    stack: Stack, context: BrowserContext, page: Page, attacker: str
) -> None:
    master = sign_up(page, "victim")
    page.goto("/dashboard/keys")  # signed in, in this very browser
    page.goto(attacker)
    page.wait_for_url(re.compile(r"/dashboard/keys$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("That was not allowed")
    expect(page.get_by_role("alert")).to_contain_text("nothing was changed")
    listed = httpx.get(f"{stack.api_url}/v1/api-keys", headers={"X-API-Key": master}).json()
    assert [k["name"] for k in listed["keys"]] == ["master"]
    page.goto("/dashboard/keys")  # and the owner is still signed in
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")
