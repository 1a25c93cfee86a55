"""The dashboard as a person's browser uses it, without the browser (httpx): sign up, sign in,
create keys, and the forms' CSRF tokens; for the e2e tests of the dashboard."""

from __future__ import annotations

import re
from typing import Any

import httpx

from aitbc_contracts.keyformat import is_well_formed

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ONE_TIME = re.compile(r'id="secret"[^>]*value="([^"]+)"')
KEY_ID = re.compile(r"<code>(key_[0-9a-f]{16})</code>")
ACCOUNT_ID = re.compile(r"acc_[0-9a-f]{16}")


class Dashboard:
    """A person's browser, without the browser: a cookie jar, the last page, its forms."""

    def __init__(self, url: str, **client: Any) -> None:
        self.client = httpx.Client(base_url=url, timeout=10, **client)
        self.seen: list[httpx.Response] = []  # every response, for the secret scans
        self.page: httpx.Response | None = None
        self.account_id = ""

    def _keep(self, response: httpx.Response) -> httpx.Response:
        self.seen.append(response)
        if response.headers.get("content-type", "").startswith("text/html"):
            self.page = response
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._keep(self.client.get(path, **kwargs))

    def post(
        self, path: str, data: dict[str, str], token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """A form post carrying the last page's CSRF token, unless another one is given."""
        form = {"csrf_token": self.csrf() if token is None else token, **data}
        return self._keep(self.client.post(path, data=form, **kwargs))

    def csrf(self) -> str:
        assert self.page is not None
        match = CSRF.search(self.page.text)
        return match.group(1) if match else ""

    @property
    def session(self) -> str:
        return self.client.cookies.get("aitbc_session") or ""

    def sign_up(self, name: str = "e2e") -> str:
        self.get("/dashboard/sign-up")
        response = self.post("/dashboard/sign-up", {"name": name})
        assert response.status_code == 201, response.text
        self.account_id = ACCOUNT_ID.findall(response.text)[0]
        return one_time_key(response)

    def sign_in(self, master: str) -> httpx.Response:
        self.get("/dashboard/sign-in")
        return self.post("/dashboard/sign-in", {"master_key": master})

    def create_key(self, name: str, **fields: str) -> tuple[str, str]:
        self.get("/dashboard/keys")
        response = self.post("/dashboard/keys", {"name": name, **fields})
        assert response.status_code == 201, response.text
        return KEY_ID.findall(response.text)[0], one_time_key(response)


def one_time_key(response: httpx.Response) -> str:
    match = ONE_TIME.search(response.text)
    assert match and is_well_formed(match.group(1)), response.text
    return match.group(1)
