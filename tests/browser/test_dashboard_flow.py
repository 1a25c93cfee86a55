"""An owner's whole story in a real browser: sign up, copy the master key, sign out, sign in,
make a key, use it, watch it on the usage chart, revoke it, regenerate another, read the
history. A screenshot of each page is saved."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.flows import (
    create_key,
    one_time_key,
    row,
    shot,
    sign_in,
    sign_up,
    wait_for_chart,
)
from tests.e2e.stack import Stack
from tests.key_scan import plaintext_keys

# The first test may install Chromium with apt-get (fixture setup counts toward the timeout).
pytestmark = pytest.mark.timeout(900)


def test_an_owner_manages_keys_and_sees_usage_in_a_browser(
    stack: Stack, context: BrowserContext, page: Page, screenshots: Path
) -> None:
    master = sign_up_then_out_then_in(page, screenshots)
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        key_id, key = a_key_used_and_on_its_chart(page, client, screenshots)
        revoke_it(page, client, key_id, key, screenshots)
        other_secrets = regenerate_another(page, client, screenshots)
    read_the_history(page, key_id, screenshots)
    fits_a_phone(page, key_id, screenshots)
    no_key_is_held(stack, context, page, issued={master, key, *other_secrets})


def sign_up_then_out_then_in(page: Page, screenshots: Path) -> str:
    """Sign up (the master key is shown once), sign out, sign in with the copied master key."""
    page.goto("/dashboard")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in$"))  # not signed in yet
    page.goto("/dashboard/sign-up")
    page.get_by_label("Account name").fill("Ada's team")
    shot(page, screenshots, "01-sign-up")

    # Sign up: the master key is shown once, with a Copy button and a plain warning.
    master = sign_up(page, "Ada's team")
    shot(page, screenshots, "02-master-key-once", mask=[page.locator("#secret")], docs="master-key")
    page.get_by_role("link", name="I have saved it").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")
    assert master not in page.content()  # shown once: never again

    # Sign out ends the session: the keys page sends us to sign in.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    page.goto("/dashboard/keys")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in$"))

    # Sign in with the copied master key.
    page.get_by_label("Master key").fill(master)
    shot(page, screenshots, "03-sign-in")
    sign_in(page, master)
    master_row = page.locator("tr", has=page.locator(".badge.master"))
    expect(master_row).to_contain_text(master[:10] + "…")  # the hint: first characters only
    expect(master_row).not_to_contain_text(master)
    return master


def a_key_used_and_on_its_chart(
    page: Page, client: httpx.Client, screenshots: Path
) -> tuple[str, str]:
    """A key created (shown once, with copy), used from an HTTP client against the Coordinator,
    and its requests on its usage chart and the account's."""
    key_id, key = create_key(page, "ci", rate_limit="30")
    shot(page, screenshots, "04-new-key-once", mask=[page.locator("#secret")])
    page.get_by_role("link", name="back to my keys").click()
    expect(row(page, key_id)).to_contain_text("active")
    expect(row(page, key_id)).to_contain_text(key[:10] + "…")
    for _ in range(3):
        assert client.get("/v1/jobs", headers={"X-API-Key": key}).status_code == 200

    row(page, key_id).get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Usage of “ci”")
    wait_for_chart(page, "last-hour", 3)
    expect(page.locator("#last-hour")).to_have_attribute("data-admitted", "3")
    expect(page.locator("#last-day")).to_have_attribute("data-requests", "3")
    expect(page.locator("#last-hour svg path.admitted")).to_have_attribute("d", re.compile("M"))
    expect(page.locator(".plan")).to_contain_text("60 requests a minute")
    expect(page.locator(".plan")).to_contain_text("this key alone: 30 a minute")
    shot(page, screenshots, "05-usage", docs="usage")
    page.get_by_label("Show").select_option(label="The whole account")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Usage")
    assert int(page.locator("#last-hour").get_attribute("data-requests") or 0) >= 3
    return key_id, key


def revoke_it(page: Page, client: httpx.Client, key_id: str, key: str, screenshots: Path) -> None:
    """Revoked after a confirmation: the client's next request is refused with 401."""
    page.goto("/dashboard/keys")
    page.get_by_role("link", name="Revoke ci").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Revoke “ci”?")
    page.get_by_label("Reason").fill("leaked in a CI log")
    shot(page, screenshots, "06-revoke-confirm")
    page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("status")).to_contain_text(f"Key “ci” ({key_id}) is revoked")
    expect(row(page, key_id)).to_contain_text("revoked")
    refused = client.get("/v1/jobs", headers={"X-API-Key": key})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "API_KEY_REVOKED"


def regenerate_another(page: Page, client: httpx.Client, screenshots: Path) -> list[str]:
    """Another key regenerated: same id, new secret; the old secret stops working. Returns both
    secrets."""
    other_id, old_secret = create_key(page, "deploy")
    assert client.get("/v1/jobs", headers={"X-API-Key": old_secret}).status_code == 200
    page.goto("/dashboard/keys")
    page.get_by_role("link", name="Regenerate deploy").click()
    page.get_by_label("Keep the old secret working for").select_option("0")
    shot(page, screenshots, "07-regenerate-confirm")
    page.get_by_role("button", name="Regenerate key").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New secret for “deploy”")
    new_secret = one_time_key(page)
    assert new_secret != old_secret
    expect(page.locator(".facts")).to_contain_text(other_id)
    shot(page, screenshots, "08-regenerated-once", mask=[page.locator("#secret")])
    assert client.get("/v1/jobs", headers={"X-API-Key": old_secret}).status_code == 401
    assert client.get("/v1/jobs", headers={"X-API-Key": new_secret}).status_code == 200
    return [old_secret, new_secret]


def read_the_history(page: Page, key_id: str, screenshots: Path) -> None:
    """The revoked key's history, from the audit trail; then the keys page."""
    page.goto("/dashboard/keys")
    row(page, key_id).get_by_role("link", name="History").click()
    events = page.locator("table.events tbody tr")
    expect(events).to_have_count(2)
    expect(events.nth(0)).to_contain_text("Created")
    expect(events.nth(1)).to_contain_text("Revoked")
    expect(events.nth(1)).to_contain_text("leaked in a CI log")
    expect(events.nth(1)).to_contain_text("Your master key")
    shot(page, screenshots, "09-history", docs="history")

    page.goto("/dashboard/keys")
    shot(page, screenshots, "10-keys", docs="keys")


def fits_a_phone(page: Page, key_id: str, screenshots: Path) -> None:
    """At phone width every page fits: nothing scrolls sideways."""
    page.set_viewport_size({"width": 375, "height": 812})
    for path, name in [
        ("/dashboard/keys", "11-keys-phone"),
        (f"/dashboard/usage?key_id={key_id}", "12-usage-phone"),
        (f"/dashboard/keys/{key_id}/events", "13-history-phone"),
    ]:
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
        shot(page, screenshots, name, docs="keys-phone" if name == "11-keys-phone" else "")


def no_key_is_held(stack: Stack, context: BrowserContext, page: Page, issued: set[str]) -> None:
    """The browser holds a session cookie, never a key; no page shows one again; no log holds
    one of the `issued`."""
    cookies = context.cookies()
    assert {c["name"] for c in cookies} <= {"aitbc_session", "aitbc_form"}
    assert not any(plaintext_keys(c["value"]) for c in cookies)
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert plaintext_keys(page.content()) == set()
    logs = stack.logs()
    assert not any(secret in logs for secret in issued), "a plaintext key in the logs"
    assert plaintext_keys(logs) == set()
