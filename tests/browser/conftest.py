"""Browser fixtures: Debian's Chromium (installed here when missing), driven headless by
Playwright, against the whole system running as real processes."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.e2e.stack import Stack

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Headless, and quiet on the network: this machine's closed network refuses Chromium's
# background connections (updates, sync, field trials), which only slow it down.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR", Path(__file__).parent / "screenshots"))


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def install_chromium() -> str:
    """Debian's chromium package, as the project's own setup: '' once it is there, else why not.
    One installer at a time: the test workers may all ask at once, and apt-get holds a lock
    that a second one would fail on."""
    if CHROMIUM.exists():
        return ""
    with open(Path(tempfile.gettempdir()) / "aitbc-chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return "" if CHROMIUM.exists() else _install()


def _install() -> str:
    if shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium"
    if os.geteuid() != 0:
        return f"{CHROMIUM} is missing; install it as root: apt-get install -y chromium"
    result = _apt_get("install", "-y", "-q", "chromium")
    if result.returncode != 0:  # a fresh machine has no package lists yet
        _apt_get("update", "-q")
        result = _apt_get("install", "-y", "-q", "chromium")
    if result.returncode != 0:
        return f"apt-get install chromium failed: {result.stderr.strip()[-500:]}"
    if not CHROMIUM.exists():
        return f"apt-get installed chromium, but not as {CHROMIUM}"
    return ""


@pytest.fixture(scope="session")
def chromium() -> Path:
    reason = install_chromium()
    if reason:
        pytest.skip(f"browser tests need Debian's Chromium: {reason}")
    return CHROMIUM


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    system = Stack(tmp_path_factory.mktemp("browser-stack")).start()
    yield system
    system.stop()


@pytest.fixture(scope="package")
def browser(chromium: Path, stack: Stack) -> Iterator[Browser]:
    """Package-scoped: Playwright's sync API keeps an event loop running in this thread while
    it is open, which `asyncio.run` (the stack's start, other tests' helpers) cannot abide."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser, stack: Stack) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) that may use the clipboard on the dashboard."""
    context = browser.new_context(base_url=stack.api_url, viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.api_url)
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the run saves a screenshot of each page (SCREENSHOTS_DIR, e.g. docs/dashboard)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
