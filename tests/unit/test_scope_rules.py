"""Which scope a request needs (SCOPE_RULES): templates, prefixes, methods, and what no rule
maps (aitbc_gate.scope_rules)."""

from __future__ import annotations

import pytest

from aitbc_gate.scope_rules import UNMAPPED, ScopeRules
from aitbc_gate.settings import DEFAULT_ROUTE_WORDS, DEFAULT_SCOPE_RULES, GateSettings

RULES = ScopeRules(DEFAULT_SCOPE_RULES, DEFAULT_ROUTE_WORDS)


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/v1/jobs", "jobs:read"),
        ("HEAD", "/v1/jobs", "jobs:read"),
        ("GET", "/v1/jobs/j_42", "jobs:read"),
        ("GET", "/v1/jobs/j_42/results", "jobs:read"),
        ("POST", "/v1/jobs", "jobs:write"),
        ("DELETE", "/v1/jobs/j_42", "jobs:write"),
        ("GET", "/v1/usage", "usage:read"),
        ("GET", "/v1/usage/keys", "usage:read"),
        ("GET", "/v1/api-keys", "keys:manage"),
        ("PATCH", "/v1/api-keys/key_0123456789abcdef", "keys:manage"),
        ("PUT", "/v1/jobs", UNMAPPED),
        ("GET", "/v1/account", UNMAPPED),
        ("GET", "/v1/other", UNMAPPED),
        ("GET", "/v1/jobs/../usage", UNMAPPED),  # resolved elsewhere, it is another route
        ("GET", "/v1/jobs/./x", UNMAPPED),
    ],
)
def test_the_default_rules(method: str, path: str, scope: str) -> None:
    assert RULES.needed(method, path) == scope
    assert RULES.needed(method, path) == scope  # and again, remembered


def test_a_template_names_ids_as_usage_events_do_and_wins_over_a_prefix() -> None:
    rules = ScopeRules(
        "GET /v1/jobs/{id}=jobs:peek; GET /v1/jobs/*=jobs:read\nGET /v1/things/{id}/x=t:x"
    )
    assert rules.needed("GET", "/v1/jobs/j_1") == "jobs:peek"
    assert rules.needed("GET", "/v1/jobs/j_1/results") == "jobs:read"
    assert rules.needed("GET", "/v1/things/t_9/x") == "t:x"  # its words are the rules' too
    assert rules.route("/v1/things/t_9/x") == "/v1/things/{id}/x"


def test_a_refusal_names_the_route_by_the_words_of_the_rules_prefixes_too() -> None:
    assert RULES.route("/v1/usage") == "/v1/usage"  # not /v1/{id}: `* /v1/usage*` names it
    assert RULES.route("/v1/api-keys/key_0123456789abcdef") == "/v1/api-keys/{id}"
    assert RULES.route("/v1/jobs/j_42") == "/v1/jobs/{id}"


def test_a_longer_prefix_wins_and_a_named_method_over_any() -> None:
    rules = ScopeRules("* /v1/*=all:any; GET /v1/*=all:read; * /v1/admin/*=admin:any")
    assert rules.needed("GET", "/v1/x") == "all:read"
    assert rules.needed("POST", "/v1/x") == "all:any"
    assert rules.needed("GET", "/v1/admin/x") == "admin:any"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("GET /v1/jobs", "not METHOD PATH=SCOPE"),
        ("get v1/jobs=jobs:read", "not METHOD PATH=SCOPE"),
        ("GET /v1/*/x=jobs:read", "may only end a path"),
        ("GET /v1/jobs=Jobs", "resource:action"),
    ],
)
def test_a_rule_that_is_not_one_stops_the_start_naming_it(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GateSettings.from_env({"SCOPE_RULES": text})


def test_the_setting_is_read_from_scope_rules() -> None:
    settings = GateSettings.from_env({"SCOPE_RULES": "GET /v1/jobs*=jobs:read"})
    assert settings.scopes_needed.needed("GET", "/v1/jobs/1") == "jobs:read"
    assert settings.scopes_needed.needed("POST", "/v1/jobs") == UNMAPPED


def test_settings_made_in_code_are_checked_too() -> None:
    with pytest.raises(ValueError, match="SCOPE_RULES"):
        GateSettings(scope_rules="GET /v1/jobs")


def test_a_refusal_names_the_edge_s_own_routes() -> None:
    """A scoped key refused `/v1/account` is told that route, not `/v1/{id}`: the edge's own
    routes' words name routes whatever USAGE_ROUTE_WORDS says."""
    from aitbc_api.app import create_app
    from aitbc_api.settings import Settings

    rules = Settings(usage_route_words=("jobs",)).scopes_needed
    assert rules.route("/v1/account") == "/v1/account"
    assert rules.route("/v1/api-keys/key_1/regenerate") == "/v1/api-keys/{id}/regenerate"
    served = {r.path for r in create_app().routes if r.path.startswith("/v1/")}
    words = {w for path in served for w in path.split("/")[2:] if w and "{" not in w}
    assert words == set(Settings.OWN_ROUTE_WORDS)
