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


def _row(owner: Dashboard, key_id: str) -> str:
    listed = unescape(owner.get("/dashboard/keys").text)
    return listed[listed.index(f'data-key-id="{key_id}"') :].split("</tr>")[0]


def test_a_keys_restrictions_are_changed_in_its_form(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    owner.sign_up()
    key_id, key = owner.create_key("reader", **{"scope:jobs:read": "on", "shadow": "on"})
    assert f'href="/dashboard/keys/{key_id}/restrict"' in _row(owner, key_id)

    form = unescape(owner.get(f"/dashboard/keys/{key_id}/restrict").text)
    assert 'name="scope:jobs:read" value="on" checked' in form
    assert 'name="scope:jobs:write" value="on">' in form
    assert 'name="shadow" value="on" checked' in form

    fields = {"scope:jobs:read": "on", "scope:jobs:write": "on", "allowed_ips": "127.0.0.0/8"}
    saved = owner.post(f"/dashboard/keys/{key_id}/restrict", fields)
    assert (saved.status_code, saved.headers["location"]) == (303, "/dashboard/keys")
    row = _row(owner, key_id)
    assert "has new restrictions" in unescape(owner.page.text if owner.page else "")
    assert "<code>jobs:write</code>" in row and "<code>127.0.0.0/8</code>" in row
    assert 'class="badge shadow"' not in row
    history = unescape(owner.get(f"/dashboard/keys/{key_id}/events").text)
    assert history.count("Restrictions changed") >= 2 and "jobs:read, jobs:write" in history

    with httpx.Client(base_url=stack.api_url, timeout=10) as api:  # the edge holds it to them
        made = api.post("/v1/jobs", json={"model": "echo"}, headers={"X-API-Key": key})
        assert made.status_code == 201, made.text
        refused = api.get("/v1/usage", headers={"X-API-Key": key})
        assert refused.json()["error"]["code"] == "INSUFFICIENT_SCOPE"

    lifted = owner.post(f"/dashboard/keys/{key_id}/restrict", {"allowed_ips": ""})
    assert lifted.status_code == 303
    assert "none" in _row(owner, key_id).split('class="restrictions">')[1]


def test_a_wrong_network_is_told_beside_the_form_and_nothing_changes(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    owner.sign_up()
    key_id, _ = owner.create_key("reader", **{"scope:jobs:read": "on"})
    owner.get(f"/dashboard/keys/{key_id}/restrict")
    answer = owner.post(
        f"/dashboard/keys/{key_id}/restrict", {"scope:usage:read": "on", "allowed_ips": "10.0/33"}
    )
    assert answer.status_code == 400
    page = unescape(answer.text)
    assert "not an IP address or CIDR network" in page and 'value="10.0/33"' in page
    assert 'name="scope:usage:read" value="on" checked' in page  # what was entered is kept
    row = _row(owner, key_id)
    assert "<code>jobs:read</code>" in row and "usage:read" not in row


def test_a_scope_of_the_deployments_own_is_offered_and_kept(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    master = owner.sign_up()
    key_id, _ = owner.create_key("reports")
    with httpx.Client(base_url=stack.api_url, timeout=10) as api:
        changed = api.patch(
            f"/v1/api-keys/{key_id}",
            json={"scopes": ["reports:read", "jobs:read"]},
            headers={"X-API-Key": master},
        )
        assert changed.status_code == 200, changed.text
    form = unescape(owner.get(f"/dashboard/keys/{key_id}/restrict").text)
    assert 'name="scope:reports:read" value="on" checked' in form

    saved = owner.post(
        f"/dashboard/keys/{key_id}/restrict",
        {"scope:reports:read": "on", "scope:jobs:read": "on", "shadow": "on"},
    )
    assert saved.status_code == 303
    row = _row(owner, key_id)
    assert "<code>reports:read</code>" in row and 'class="badge shadow"' in row
    assert "scope:nobody:asked" not in owner.get(f"/dashboard/keys/{key_id}/restrict").text
    # a scope that was not offered is not taken from a forged form
    owner.post(f"/dashboard/keys/{key_id}/restrict", {"scope:admin:all": "on"})
    assert "admin:all" not in _row(owner, key_id)


def test_a_master_key_or_a_revoked_key_has_no_restrictions_to_change(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    owner.sign_up()
    keys = unescape(owner.get("/dashboard/keys").text)
    master_id = keys[keys.index('<span class="badge master">') - 400 :].split('data-key-id="')[1]
    master_id = master_id.split('"')[0]
    assert "cannot be restricted" in owner.get(f"/dashboard/keys/{master_id}/restrict").text
    forced = owner.post(f"/dashboard/keys/{master_id}/restrict", {"scope:jobs:read": "on"})
    assert forced.status_code == 400 and "cannot be restricted" in unescape(forced.text)

    key_id, _ = owner.create_key("gone")
    owner.post(f"/dashboard/keys/{key_id}/revoke", {"reason": ""})
    assert "already revoked" in owner.get(f"/dashboard/keys/{key_id}/restrict").text
    late = owner.post(f"/dashboard/keys/{key_id}/restrict", {"scope:jobs:read": "on"})
    assert late.status_code == 409 and "revoked" in unescape(late.text)
    assert owner.get("/dashboard/keys/key_0000000000000000/restrict").status_code == 404


def test_too_many_scopes_are_told_beside_the_form_whatever_fields_came(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    master = owner.sign_up()
    key_id, _ = owner.create_key("many")
    held = [f"s{i}:read" for i in range(16)]
    with httpx.Client(base_url=stack.api_url, timeout=10) as api:
        changed = api.patch(
            f"/v1/api-keys/{key_id}", json={"scopes": held}, headers={"X-API-Key": master}
        )
        assert changed.status_code == 200, changed.text
    ticked = {f"scope:{scope}": "on" for scope in [*held, "jobs:read"]}
    owner.get(f"/dashboard/keys/{key_id}/restrict")
    # a form without its allowed IPs field (not a browser's, but anyone's to send)
    answer = owner.post(f"/dashboard/keys/{key_id}/restrict", ticked)
    assert answer.status_code == 400, answer.text
    assert "at most 16 scopes" in unescape(answer.text)
    assert 'name="allowed_ips" type="text" maxlength="1999" value=""' in answer.text
