"""Restricted keys in the dashboard: the create form takes scopes, allowed IPs and shadow mode,
the key list and the key's history show them, and the key is held to them over the API."""

from __future__ import annotations

from html import unescape

import httpx

from tests.e2e.dashboard import Dashboard
from tests.e2e.stack import Stack


def test_a_restricted_key_made_in_the_dashboard(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    owner.sign_up()
    key_id, key = owner.create_key(
        "reader",
        **{"scope:jobs:read": "on", "allowed_ips": "127.0.0.1, 2001:db8::/32", "shadow": "on"},
    )
    made = unescape(owner.page.text if owner.page else "")
    assert "jobs:read" in made and "127.0.0.1/32, 2001:db8::/32" in made

    listed = unescape(owner.get("/dashboard/keys").text)
    row = listed[listed.index(f'data-key-id="{key_id}"') :].split("</tr>")[0]
    assert "<code>jobs:read</code>" in row and "<code>2001:db8::/32</code>" in row
    assert 'class="badge shadow"' in row
    history = unescape(owner.get(f"/dashboard/keys/{key_id}/events").text)
    assert "Restrictions changed" in history and "127.0.0.1/32, 2001:db8::/32" in history

    with httpx.Client(base_url=stack.api_url, timeout=10) as api:
        assert api.get("/v1/jobs", headers={"X-API-Key": key}).status_code == 200
        refused = api.post("/v1/jobs", json={"model": "echo"}, headers={"X-API-Key": key})
        assert refused.json()["error"]["code"] == "INSUFFICIENT_SCOPE"


def test_a_network_that_is_not_one_is_told_beside_the_form(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    owner.sign_up()
    owner.get("/dashboard/keys")
    answer = owner.post("/dashboard/keys", {"name": "x", "allowed_ips": "10.0.0.0/33"})
    assert answer.status_code == 400
    page = unescape(answer.text)
    assert "not an IP address or CIDR network" in page and 'value="10.0.0.0/33"' in page
