"""Names that would rewrite what people read (control characters, bidi overrides) are refused
at the edge with the error body, whichever way they come: the API's JSON, the dashboard's forms."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.dashboard import Dashboard
from tests.e2e.stack import Stack

HOSTILE = ["invoice\u202efdp.exe", "\x1b[31mred", "a\nb", "\u2067x\u2069", "bom\ufeff", "\x85"]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_key_name_with_control_or_format_characters_is_refused(
    api: httpx.Client, account: dict[str, str], name: str
) -> None:
    refused = api.post(
        "/v1/api-keys", json={"name": name}, headers={"X-API-Key": account["master"]}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "control or format characters" in refused.json()["error"]["message"]
    listed = api.get("/v1/api-keys", headers={"X-API-Key": account["master"]}).json()["keys"]
    assert [k["name"] for k in listed] == ["master"]


@pytest.mark.parametrize("name", HOSTILE)
def test_an_account_name_with_control_or_format_characters_is_refused(
    api: httpx.Client, name: str
) -> None:
    refused = api.post("/v1/accounts", json={"name": name})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "VALIDATION_ERROR"


def test_names_in_any_script_are_kept(api: httpx.Client) -> None:
    made = api.post("/v1/accounts", json={"name": "Zoë ключ 鍵"})
    assert made.status_code == 201 and made.json()["name"] == "Zoë ключ 鍵"
    master = made.json()["master_key"]["key"]
    key = api.post("/v1/api-keys", json={"name": "مفتاح 🔑"}, headers={"X-API-Key": master})
    assert key.status_code == 201 and key.json()["name"] == "مفتاح 🔑"


def test_the_dashboard_refuses_them_too(stack: Stack) -> None:
    owner = Dashboard(stack.api_url)
    owner.sign_up()
    owner.get("/dashboard/keys")
    refused = owner.post("/dashboard/keys", {"name": "evil\u202etxt"})
    assert refused.status_code == 400 and "VALIDATION_ERROR" in refused.text
    assert "evil" not in owner.get("/dashboard/keys").text
    stranger = Dashboard(stack.api_url)
    stranger.get("/dashboard/sign-up")
    refused = stranger.post("/dashboard/sign-up", {"name": "\x1b[2J"})
    assert refused.status_code == 400, refused.text
