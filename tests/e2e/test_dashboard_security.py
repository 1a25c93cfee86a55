"""The dashboard's promises, checked over HTTP against the whole system: forged form posts are
refused and change nothing, one account never sees another's keys, no page, cookie or log
holds a plaintext key except the one-time display, and sessions end when they should."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import nats

from aitbc_contracts.messages import OPERATOR, RevokeKey, encoder
from aitbc_contracts.subjects import KEYS_OPERATOR_COMMANDS
from tests.e2e.dashboard import KEY_ID, Dashboard, one_time_key
from tests.e2e.stack import Stack
from tests.e2e.tls import self_signed
from tests.e2e.usage_stream import wait_for
from tests.key_scan import plaintext_keys


def works(stack: Stack, key: str) -> bool:
    return httpx.get(f"{stack.api_url}/v1/jobs", headers={"X-API-Key": key}).status_code == 200


def key_names(stack: Stack, master: str) -> list[str]:
    listed = httpx.get(f"{stack.api_url}/v1/api-keys", headers={"X-API-Key": master})
    return [k["name"] for k in listed.json()["keys"]]


def refused(response: httpx.Response) -> bool:
    return response.status_code == 403 and "nothing was changed" in response.text


def test_forged_form_posts_are_refused_and_change_nothing(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    master = owner.sign_up()
    key_id, key = owner.create_key("target")
    owner.get("/dashboard/keys")
    token = owner.csrf()
    other = Dashboard(stack.api_url)
    other.sign_up()
    other.get("/dashboard/keys")
    stranger = Dashboard(stack.api_url)  # no session at all

    evil = {"name": "evil"}
    assert refused(owner.post("/dashboard/keys", evil, token=""))
    assert refused(owner.post("/dashboard/keys", evil, token="guessed-" + token[8:]))
    assert refused(owner.post("/dashboard/keys", evil, token=other.csrf()))  # not this session's
    assert refused(owner.post("/dashboard/keys", evil, headers={"Sec-Fetch-Site": "cross-site"}))
    assert refused(owner.post("/dashboard/keys", evil, headers={"Sec-Fetch-Site": "same-site"}))
    assert refused(owner.post("/dashboard/keys", evil, headers={"Origin": "null"}))
    assert refused(stranger.post("/dashboard/keys", evil, token=token))
    json_post = owner.client.post("/dashboard/keys", json={"name": "evil", "csrf_token": token})
    assert json_post.status_code == 403
    for action in ("revoke", "regenerate"):
        assert refused(owner.post(f"/dashboard/keys/{key_id}/{action}", {}, token="nope"))
        assert refused(stranger.post(f"/dashboard/keys/{key_id}/{action}", {}, token=token))
    assert key_names(stack, master) == ["master", "target"]
    assert works(stack, key)

    # Nobody can sign this browser out, or into another account, from elsewhere.
    assert refused(owner.post("/dashboard/sign-out", {}, token="nope"))
    assert owner.get("/dashboard/keys").status_code == 200
    fresh = Dashboard(stack.api_url)
    fresh.get("/dashboard/sign-in")
    assert refused(fresh.post("/dashboard/sign-in", {"master_key": master}, token="nope"))
    assert refused(fresh.post("/dashboard/sign-up", {}, token=""))
    assert refused(
        fresh.post(
            "/dashboard/sign-in", {"master_key": master}, headers={"Sec-Fetch-Site": "cross-site"}
        )
    )
    assert "aitbc_session" not in fresh.client.cookies

    # With the right token, from this site, the same post works.
    assert (
        owner.post("/dashboard/keys", evil, headers={"Sec-Fetch-Site": "same-origin"}).status_code
        == 201
    )


def test_one_account_never_sees_another_accounts_keys(stack: Stack) -> None:
    alice = Dashboard(stack.api_url)
    alice_master = alice.sign_up("alice")
    alice_key_id, alice_key = alice.create_key("alice-private-name")
    bob = Dashboard(stack.api_url)
    bob.sign_up("bob")
    bob_key_id, _ = bob.create_key("bob-key")

    bob_keys = bob.get("/dashboard/keys").text
    assert bob_key_id in bob_keys
    assert alice_key_id not in bob_keys and "alice-private-name" not in bob_keys
    token = bob.csrf()
    for path in [
        f"/dashboard/keys/{alice_key_id}/revoke",
        f"/dashboard/keys/{alice_key_id}/regenerate",
        f"/dashboard/keys/{alice_key_id}/events",
        f"/dashboard/usage?key_id={alice_key_id}",
    ]:
        response = bob.get(path)
        assert response.status_code == 404, path
        assert "There is no such key in your account." in response.text
        assert "alice-private-name" not in response.text
    for action in ("revoke", "regenerate"):
        response = bob.post(f"/dashboard/keys/{alice_key_id}/{action}", {}, token=token)
        assert response.status_code == 404, action
    assert works(stack, alice_key)
    assert key_names(stack, alice_master) == ["master", "alice-private-name"]
    usage = bob.get("/dashboard/usage").text
    assert alice_key_id not in usage and "alice-private-name" not in usage


def test_no_page_cookie_or_log_holds_a_plaintext_key_but_the_one_time_display(
    stack: Stack,
) -> None:
    owner = Dashboard(stack.api_url)
    master = owner.sign_up("scan")
    key_id, key = owner.create_key("scan")
    assert works(stack, key)
    owner.get("/dashboard/keys")
    owner.get(f"/dashboard/usage?key_id={key_id}")
    owner.get(f"/dashboard/keys/{key_id}/events")
    owner.get(f"/dashboard/keys/{key_id}/regenerate")
    regenerated = one_time_key(
        owner.post(f"/dashboard/keys/{key_id}/regenerate", {"grace_period_seconds": "300"})
    )
    owner.get(f"/dashboard/keys/{key_id}/revoke")
    owner.post(f"/dashboard/keys/{key_id}/revoke", {"reason": "scan"}, follow_redirects=True)
    owner.get("/dashboard/keys")
    owner.post("/dashboard/sign-out", {}, follow_redirects=True)
    assert owner.sign_in(key).status_code == 401  # a revoked key, typed where the master goes
    assert owner.sign_in(master).status_code == 303
    _, standard = owner.create_key("standard")
    owner.post("/dashboard/sign-out", {}, follow_redirects=True)
    forbidden = owner.sign_in(standard)  # an API key is not a master key
    assert forbidden.status_code == 403 and "not a master key" in forbidden.text
    issued = {master, key, regenerated, standard}

    one_time = []
    for response in owner.seen:
        found = plaintext_keys(response.text + repr(response.headers.multi_items()))
        if found:
            one_time.append(response)
            assert len(found) == 1 and found == {one_time_key(response)}
            assert response.request.method == "POST"  # only ever the answer to a form
            assert response.headers["cache-control"] == "no-store"
    assert {one_time_key(r) for r in one_time} == issued
    assert len(one_time) == len(issued)  # each shown exactly once
    assert not any(plaintext_keys(value) for value in owner.client.cookies.values())
    logs = stack.logs()
    assert not any(secret in logs for secret in issued), "a plaintext key in the logs"
    assert plaintext_keys(logs) == set()


def test_sign_out_ends_the_session_on_the_server(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    owner.sign_up()
    owner.get("/dashboard/keys")
    cookie, token = owner.session, owner.csrf()
    signed_out = owner.post("/dashboard/sign-out", {})
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/dashboard/sign-in?reason=signed-out"
    assert "aitbc_session" not in owner.client.cookies

    replay = Dashboard(stack.api_url)
    replay.client.cookies.set("aitbc_session", cookie, path="/dashboard")
    back = replay.get("/dashboard/keys")
    assert back.status_code == 303 and back.headers["location"].startswith("/dashboard/sign-in")
    replay.client.cookies.set("aitbc_session", cookie, path="/dashboard")
    assert refused(replay.post("/dashboard/keys", {"name": "late"}, token=token))


def revoke_as_operator(stack: Stack, key_id: str) -> None:
    async def send() -> None:
        nc = await nats.connect(**stack.nats.options())
        try:
            command = RevokeKey(account_id=None, key_id=key_id, actor=OPERATOR, reason="test")
            await nc.request(KEYS_OPERATOR_COMMANDS, encoder.encode(command), timeout=5)
        finally:
            await nc.close()

    asyncio.run(send())


def test_a_master_key_that_stops_working_ends_its_sessions(stack: Stack) -> None:
    here, elsewhere = Dashboard(stack.api_url), Dashboard(stack.api_url)
    master = here.sign_up()
    assert elsewhere.sign_in(master).status_code == 303
    master_id = KEY_ID.findall(here.get("/dashboard/keys").text)[0]

    # Regenerated here: this session follows the new key; the other one ends at once.
    here.get(f"/dashboard/keys/{master_id}/regenerate")
    new_master = one_time_key(
        here.post(f"/dashboard/keys/{master_id}/regenerate", {"grace_period_seconds": "0"})
    )
    assert here.get("/dashboard/keys").status_code == 200
    ended = elsewhere.get("/dashboard/keys")
    assert ended.headers["location"] == "/dashboard/sign-in?reason=INVALID_API_KEY"
    told = elsewhere.get(ended.headers["location"]).text
    assert "Your master key was regenerated" in told
    assert elsewhere.sign_in(master).status_code == 401
    assert elsewhere.sign_in(new_master).status_code == 303

    # Revoked by an operator: every session of the account ends, as soon as the edge hears
    # of it from the key event stream (as every edge does for API keys).
    revoke_as_operator(stack, master_id)
    for dashboard in (here, elsewhere):
        gone = wait_for(lambda d=dashboard: d.get("/dashboard/keys").headers.get("location"), 20)
        assert gone == "/dashboard/sign-in?reason=API_KEY_REVOKED"
    assert "has been revoked" in here.get("/dashboard/sign-in?reason=API_KEY_REVOKED").text


def set_cookie(response: httpx.Response, name: str) -> str:
    return next(h for h in response.headers.get_list("set-cookie") if h.startswith(name + "="))


def test_cookies_are_http_only_strict_and_secure_over_https(stack: Stack, tmp_path: Path) -> None:
    plain = Dashboard(stack.api_url)
    plain.sign_up()
    cookie = next(c for c in plain.client.cookies.jar if c.name == "aitbc_session")
    assert cookie.path == "/dashboard" and not cookie.secure
    raw = set_cookie(plain.seen[-1], "aitbc_session")
    assert "HttpOnly" in raw and "SameSite=strict" in raw and "Secure" not in raw

    cert, key = self_signed(tmp_path)
    tls_files = {"TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key)}
    tls = stack.add_edge("api-dashboard-tls", **tls_files).start()
    try:
        secure = Dashboard(f"https://127.0.0.1:{tls.port}", verify=str(cert))
        secure.sign_up()
        raw = set_cookie(secure.seen[-1], "aitbc_session")
        assert "Secure" in raw and "HttpOnly" in raw and "SameSite=strict" in raw
        assert secure.get("/dashboard/keys").status_code == 200  # the cookie comes back
    finally:
        tls.stop()
