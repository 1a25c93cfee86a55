"""What a person does in the dashboard, step by step, for the browser tests to share."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from aitbc_contracts.keyformat import is_well_formed

# `just screenshots` sets this: the README's pictures are saved there too.
DOCS = os.environ.get("DOCS_SCREENSHOTS_DIR", "")


def shot(
    page: Page, folder: Path, name: str, *, mask: list[Locator] | None = None, docs: str = ""
) -> Path:
    """A full-page screenshot; one-time keys are masked so that no image holds one. With
    `docs`, the README's copy is saved under that name in DOCS_SCREENSHOTS_DIR, if set."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, mask=mask or [], animations="disabled")
    if docs and DOCS:
        Path(DOCS).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(DOCS) / f"{docs}.png")
    return path


def one_time_key(page: Page) -> str:
    """The key on a one-time display page, copied with its Copy button and read back from
    the clipboard (it must equal what the page shows)."""
    expect(page.get_by_role("alert")).to_contain_text("it will not be shown again")
    shown = page.locator("#secret").input_value()
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#secret-status")).to_have_text("Copied to the clipboard.")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == shown and is_well_formed(copied)
    return str(copied)


def sign_up(page: Page, name: str) -> str:
    page.goto("/dashboard/sign-up")
    page.get_by_label("Account name").fill(name)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("master key")
    return one_time_key(page)


def sign_in(page: Page, master: str) -> None:
    page.goto("/dashboard/sign-in")
    page.get_by_label("Master key").fill(master)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/dashboard/keys$"))


def create_key(page: Page, name: str, **options: str) -> tuple[str, str]:
    """(key id, key) of a new key, made from the keys page."""
    page.goto("/dashboard/keys")
    page.get_by_label("Name", exact=True).fill(name)
    if "expires" in options:
        page.get_by_label("Expires").select_option(label=options["expires"])
    if "rate_limit" in options:
        page.get_by_label("Own limit").fill(options["rate_limit"])
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    key = one_time_key(page)
    key_id = page.locator(".facts dd code").first.inner_text()
    return key_id, key


def row(page: Page, key_id: str) -> Locator:
    return page.locator(f'tr[data-key-id="{key_id}"]')


def wait_for_chart(page: Page, chart: str, requests: int, timeout: float = 15.0) -> None:
    """Reloads the usage page until the chart counts the requests (aggregation takes a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        shown = int(page.locator(f"#{chart}").get_attribute("data-requests") or 0)
        if shown >= requests or time.monotonic() > deadline:
            assert shown == requests, f"{chart} shows {shown} requests, not {requests}"
            return
        time.sleep(0.5)
        page.reload()
