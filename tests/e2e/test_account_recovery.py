"""Account recovery through the whole system: a dead account (its master key revoked) is
revived by an operator's `aitbc accounts new-master-key`, and the dashboard names that command
to the owner who can no longer sign in."""

from __future__ import annotations

import subprocess

import httpx

from aitbc_contracts.keyformat import is_well_formed
from tests.e2e.dashboard import Dashboard
from tests.e2e.stack import BIN, Stack
from tests.e2e.test_isolation import cli
from tests.e2e.usage_stream import wait_for


def test_an_operator_revives_an_account_whose_master_key_was_revoked(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    old = owner.sign_up()
    assert owner.get("/dashboard/keys").status_code == 200
    with httpx.Client(base_url=stack.api_url, timeout=10) as api:
        listed = api.get("/v1/api-keys", headers={"X-API-Key": old}).json()["keys"]
        cli(stack, "keys", "revoke", listed[0]["key_id"], "--reason", "leaked")
        dead = api.get("/v1/api-keys", headers={"X-API-Key": old})
        assert dead.json()["error"]["code"] == "API_KEY_REVOKED"

        ended = owner.get("/dashboard/keys", follow_redirects=True)
        assert "aitbc accounts new-master-key" in ended.text  # what to ask an operator for
        refused = Dashboard(stack.api_url).sign_in(old)
        assert refused.status_code == 401 and "aitbc accounts new-master-key" in refused.text

        made = cli(stack, "accounts", "new-master-key", owner.account_id)
        new = made["master_key"]
        assert is_well_formed(new) and made["kind"] == "master"
        assert api.get("/v1/api-keys", headers={"X-API-Key": new}).status_code == 200
        assert api.get("/v1/jobs", headers={"X-API-Key": old}).status_code == 401
        assert Dashboard(stack.api_url).sign_in(new).status_code in (302, 303)

    def shown() -> str:  # the key event log, as the relay has published it by now
        done = subprocess.run(
            [str(BIN / "aitbc"), "keys", "show", made["key_id"]],
            env={**stack.env(), "PATH": str(BIN)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout if done.returncode == 0 else ""

    show = wait_for(lambda: "by operator" in shown() and shown())
    assert "master" in show and "active" in show
