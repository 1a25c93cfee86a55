"""The dashboard follows the API's rules: its requests count against the plan like the API
calls they make, errors are the API's codes told in plain words, and idle sessions end."""

from __future__ import annotations

import time
from html import unescape

import httpx

from tests.e2e.dashboard import KEY_ID, Dashboard
from tests.e2e.stack import Stack
from tests.e2e.test_rate_limits import early_in_a_minute
from tests.e2e.usage_stream import usage_events, wait_for
from tests.key_scan import plaintext_keys


def remaining(response: httpx.Response) -> int:
    return int(response.headers["x-ratelimit-remaining"])


def test_dashboard_requests_count_against_the_plan_like_api_calls(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    master = owner.sign_up()  # signing up, in or out is not an API call: not counted
    _, key = owner.create_key("busy")
    api = httpx.Client(base_url=stack.api_url, timeout=10)
    early_in_a_minute(margin=25)
    first = owner.get("/dashboard/keys")
    by_api = api.get("/v1/jobs", headers={"X-API-Key": key})
    second = owner.get("/dashboard/keys")
    assert first.headers["x-ratelimit-limit"] == "60"
    assert remaining(by_api) == remaining(first) - 1  # one budget: the account's
    assert remaining(second) == remaining(by_api) - 1

    # Spend the rest of the minute's budget through the API: the dashboard is limited too.
    for _ in range(remaining(second)):
        assert api.get("/v1/jobs", headers={"X-API-Key": key}).status_code == 200
    limited = owner.get("/dashboard/keys")
    assert limited.status_code == 429
    assert "You have reached your plan's limit" in unescape(limited.text)
    assert "Rate limit of 60 requests per minute exceeded" in limited.text
    assert "RATE_LIMIT_EXCEEDED" in limited.text
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert "Sign out" in limited.text and owner.account_id in limited.text  # still signed in
    assert 'href="/dashboard/sign-up"' not in limited.text
    assert api.get("/v1/api-keys", headers={"X-API-Key": master}).status_code == 429
    assert owner.get("/dashboard/sign-in").status_code == 200  # not an API call: not limited

    # The dashboard's requests are in the usage stream like any other, under its own routes.
    def dashboard_routes() -> set[str]:
        events = usage_events(stack.nats.access("auditor"), owner.account_id)
        return {e.route for e in events if e.route.startswith("/dashboard")}

    assert wait_for(lambda: {"/dashboard/keys"} <= dashboard_routes())
    assert "/dashboard/sign-in" not in dashboard_routes()


def test_errors_are_told_in_plain_words_with_the_apis_codes(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    owner.sign_up()
    key_id, key = owner.create_key("words")

    cases = [
        (owner.post("/dashboard/keys", {"name": ""}), 400, "Give the key a name"),
        (owner.post("/dashboard/keys", {"name": "x" * 101}), 400, "Give the key a name"),
        (
            owner.post("/dashboard/keys", {"name": "n", "rate_limit": "lots"}),
            400,
            "must be a whole number",
        ),
        (
            owner.post("/dashboard/keys", {"name": "n", "expires_in_days": "2"}),
            400,
            "from the list",
        ),
        (
            owner.get("/dashboard/keys/key_0000000000000000/revoke"),
            404,
            "There is no such key in your account.",
        ),
        (owner.get("/dashboard/keys/not-a-key/events"), 404, "There is no such key"),
        (owner.get("/dashboard/usage?key_id=nope"), 404, "There is no such key"),
        (owner.get("/dashboard/no-such-page"), 404, "There is no such page"),
        (owner.get("/dashboard/keys/" + key_id), 404, "There is no such page"),
        (owner.client.put("/dashboard/keys"), 405, "cannot be used this way"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert words in unescape(response.text), (response.request.url, words)
        assert response.headers["content-type"].startswith("text/html")
    # The form keeps what was typed (never a key) beside the error.
    assert 'value="' + "x" * 100 in cases[1][0].text or "x" * 101 in cases[1][0].text

    # A link to sign out asks first: only the form post (with its token) signs out.
    assert "Sign out?" in owner.get("/dashboard/sign-out").text
    master_id = KEY_ID.findall(owner.get("/dashboard/keys").text)[0]
    token = owner.csrf()
    own_master = owner.post(f"/dashboard/keys/{master_id}/revoke", {}, token=token)
    assert own_master.status_code == 403
    assert "a master key can only be revoked by an operator" in own_master.text
    owner.post(f"/dashboard/keys/{key_id}/revoke", {}, token=token)
    again = owner.post(f"/dashboard/keys/{key_id}/regenerate", {}, token=token)
    assert again.status_code == 409
    assert "That key has been revoked, so it cannot be changed" in again.text
    assert "CONFLICT" in again.text

    stranger = Dashboard(stack.api_url)
    for typed, status, words in [
        ("", 401, "Enter your master key."),
        ("not-a-key", 401, "That key was not recognised"),
        (key, 401, "That master key has been revoked"),
    ]:
        response = stranger.sign_in(typed)
        assert response.status_code == status and words in unescape(response.text), typed
        assert plaintext_keys(response.text) == set()  # what was typed is never echoed
        assert 'name="master_key" type="password"' in response.text


def test_a_digit_that_is_no_number_is_refused_beside_the_form(stack: Stack) -> None:
    """² and ³ are digits to str.isdigit, not to int(): refused 400, never a 500."""
    owner = Dashboard(stack.api_url)
    owner.sign_up()
    key_id, _ = owner.create_key("digits")
    for path, field, words in [
        ("/dashboard/keys", {"name": "n", "rate_limit": "²"}, "must be a whole number"),
        (f"/dashboard/keys/{key_id}/regenerate", {"grace_period_seconds": "³"}, "grace period"),
    ]:
        owner.get("/dashboard/keys")
        response = owner.post(path, field)
        assert response.status_code == 400 and words in unescape(response.text), path


IDLE = 4  # seconds: time enough, on a loaded machine, to sign up and use the session first


def test_an_idle_session_ends(stack: Stack) -> None:
    edge = stack.add_edge("api-short-sessions", DASHBOARD_SESSION_IDLE=str(IDLE)).start()
    try:
        owner = Dashboard(edge.url)
        owner.sign_up()
        assert owner.get("/dashboard/keys").status_code == 200
        time.sleep(IDLE + 0.5)  # longer is no harm: the session is over either way
        ended = owner.get("/dashboard/keys")
        assert ended.status_code == 303
        assert ended.headers["location"] == "/dashboard/sign-in?reason=expired"
        assert "Your session has ended" in owner.get(ended.headers["location"]).text
    finally:
        edge.stop()
