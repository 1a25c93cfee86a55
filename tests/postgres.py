"""Where the tests find PostgreSQL, and what they do when it is not there: the one place.

TEST_POSTGRES_URL names the server (default: postgresql://postgres@127.0.0.1:5432/test, trust
authentication); each test makes a database of its own on it. Where the server cannot be
reached, the PostgreSQL tests are skipped, so that a laptop without one still runs the rest;
with AITBC_REQUIRE_POSTGRES=1 (CI sets it) they fail instead, saying why: a CI machine whose
server is down must not pass with half the storage tests left out.
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

URL_VARIABLE = "TEST_POSTGRES_URL"
REQUIRE_VARIABLE = "AITBC_REQUIRE_POSTGRES"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    """The server's URL (a database on it that the tests may connect to, to create theirs)."""
    return os.environ.get(URL_VARIABLE, DEFAULT_URL)


def url_given() -> bool:
    """The URL was set on purpose: that server, and no stand-in, is the one to test against."""
    return URL_VARIABLE in os.environ


def required() -> bool:
    return os.environ.get(REQUIRE_VARIABLE, "") not in ("", "0")


def reachable(url: str | None = None, timeout: float = 0.5) -> bool:
    """Something accepts connections at the URL's host and port."""
    parts = urlsplit(url or server_url())
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout):
            return True
    except OSError:
        return False


def absent(why: str) -> NoReturn:
    """Skips the test, or fails it where PostgreSQL is required."""
    if required():
        pytest.fail(
            f"{why}, and {REQUIRE_VARIABLE}=1 requires it: start PostgreSQL, or set "
            f"{URL_VARIABLE} to a server that runs (or unset {REQUIRE_VARIABLE} to skip)",
            pytrace=False,
        )
    pytest.skip(why)


def where(url: str | None = None) -> str:
    """The host and port of the URL, for messages (no user name or password)."""
    parts = urlsplit(url or server_url())
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"
