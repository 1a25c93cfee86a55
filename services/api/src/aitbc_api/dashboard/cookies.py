"""The dashboard's cookies, read in linear time from a Cookie header of bounded size.

Litestar parses cookies with CPython's `http.cookies._unquote`, which takes time quadratic in
the length of a quoted value full of backslashes on every Python without the fix of
CVE-2024-7592 (3.11.7 among them): one 60 KiB cookie held the single-process edge for seconds.
The fix must not depend on the interpreter, so the dashboard's requests read cookies here
instead: the header is refused (431) over `MAX_COOKIE_BYTES` before it is read, then split and
stripped, which is linear. The dashboard's own cookies are URL-safe tokens, never quoted or
escaped: a quoted value loses its quotes, and escapes are never interpreted.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.types import Empty

from aitbc_contracts.messages import Code
from aitbc_gate.errors import ApiError


def parse_cookies(header: str) -> dict[str, str]:
    """`name=value` pairs separated by `;`; the first of a name wins (browsers send the cookie
    of the most specific path first); a pair without a name or `=` is skipped."""
    cookies: dict[str, str] = {}
    for pair in header.split(";"):
        name, equals, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not name or name in cookies:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies[name] = value
    return cookies


class DashboardRequest(Request[Any, Any, State]):
    """A dashboard request: `cookies` from `parse_cookies`, after the size check."""

    max_cookie_bytes = 8 * 1024  # set by `dashboard_request`

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is Empty:
            headers = [value for name, value in self.scope["headers"] if name == b"cookie"]
            size = sum(len(value) for value in headers)
            if size > self.max_cookie_bytes:
                raise ApiError(
                    431,
                    Code.REQUEST_TOO_LARGE,
                    f"The Cookie header exceeds {self.max_cookie_bytes} bytes",
                )
            # kept where Litestar keeps the request's cookies: nothing parses them again
            self._connection_state.cookies = self._cookies = parse_cookies(
                b"; ".join(headers).decode("latin-1")
            )
        return self._cookies  # type: ignore[return-value]


def dashboard_request(max_cookie_bytes: int) -> type[DashboardRequest]:
    """The request class for the dashboard's router, with this cap on the Cookie header."""
    return type(
        "CappedDashboardRequest", (DashboardRequest,), {"max_cookie_bytes": max_cookie_bytes}
    )
