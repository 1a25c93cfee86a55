"""The edge's settings from the environment: each one from its variable, as its type."""

from __future__ import annotations

import dataclasses

import pytest

from aitbc_api.settings import Settings

# Read in from_env with more than a type's conversion, or not from the environment at all.
READ_APART = {"nats", "upstream_url", "fail_open", "plan_limits", "standard_key_usage"}
NOT_FROM_ENV = {"negative_cache_size", "negative_cache_ttl"}


def test_every_setting_is_read_from_the_environment() -> None:
    fields = {field.name for field in dataclasses.fields(Settings)}
    assert fields - NOT_FROM_ENV == set(Settings.VARIABLES) | READ_APART


def test_each_setting_takes_its_defaults_type() -> None:
    settings = Settings.from_env(
        {
            "API_PORT": "9000",
            "AUTH_STALE_MAX": "2.5",
            "PUBLIC_ROUTES": " /v1/health , /v1/status,",
            "API_KEY_IN_QUERY": "off",
            "REQUIRE_HTTPS": "yes",
            "SPECULATIVE_FORWARDING": "maybe",
            "UPSTREAM_URL": "http://upstream:8011/",
        }
    )
    assert (settings.port, settings.auth_stale_max) == (9000, 2.5)
    assert settings.public_routes == ("/v1/health", "/v1/status")
    assert (settings.api_key_in_query, settings.require_https) == (False, True)
    assert settings.speculative_forwarding is True  # not a flag's word: the default
    assert settings.upstream_url == "http://upstream:8011"


def test_unset_variables_leave_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_workers_are_one_or_more() -> None:
    assert Settings.from_env({"API_WORKERS": "2"}).workers == 2
    with pytest.raises(ValueError, match="API_WORKERS"):
        Settings.from_env({"API_WORKERS": "0"})


def test_idle_upstream_connections_are_kept_less_long_than_an_upstreams_keep_alive() -> None:
    assert Settings().upstream_keepalive < 5  # uvicorn's keep-alive timeout, the Coordinator's
    assert Settings.from_env({"UPSTREAM_KEEPALIVE": "60"}).upstream_keepalive == 60
    with pytest.raises(ValueError, match="UPSTREAM_KEEPALIVE"):
        Settings.from_env({"UPSTREAM_KEEPALIVE": "-1"})
