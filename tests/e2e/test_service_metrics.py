"""The keys and usage services' /metrics, scraped on their operators' ports while a client
signs up, makes a key and uses it until it is limited: parsed with prometheus_client's own
parser, the commands, the key checks and the decisions of the account's partition move by what
was asked, the gauges read what a quiet system is, and no sample carries a secret or an id."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from aitbc_contracts.keyformat import hash_key
from aitbc_contracts.subjects import USAGE_PARTITIONS, partition_of
from tests.chaos.load import wait_for
from tests.e2e.stack import Stack
from tests.key_scan import plaintext_keys
from tests.scrape import samples, value

AGGREGATES_LAG = "aitbc_usage_aggregates_lag_events"
HEX_64 = re.compile(r"[0-9a-fA-F]{64}")  # a SHA-256 in hex: a key's hash, a chain hash


def moved(before: str, after: str, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def used_until_limited(api: httpx.Client, key: str) -> tuple[int, int]:
    """Requests with `key` until one is limited (a Free account's 60 a minute, whichever
    minute it falls in): how many were admitted, and how many limited (1)."""
    for admitted in range(2 * 60 + 1):
        status = api.get("/v1/jobs", headers={"X-API-Key": key}).status_code
        if status == 429:
            return admitted, 1
        assert status == 200, status
    raise AssertionError("a Free account was never limited")


def test_commands_checks_and_decisions_are_counted_by_the_services(
    stack: Stack, api: httpx.Client
) -> None:
    keys_before = stack.metrics("keys")
    signed_up = api.post("/v1/accounts", json={"name": "metrics"}).json()
    account, master = signed_up["account_id"], {"X-API-Key": signed_up["master_key"]["key"]}
    made = api.post("/v1/api-keys", json={"name": "scraped"}, headers=master)
    assert made.status_code == 201, made.text
    other = api.post("/v1/accounts", json={"name": "other"}).json()
    theirs = api.post(
        "/v1/api-keys", json={"name": "theirs"}, headers={"X-API-Key": other["master_key"]["key"]}
    ).json()
    refused = api.delete(f"/v1/api-keys/{theirs['key_id']}", headers=master)
    assert refused.status_code == 404, refused.text  # refused by the keys service

    usage_before = stack.metrics("usage")
    admitted, limited = used_until_limited(api, made.json()["key"])
    keys_after, usage_after = stack.metrics("keys"), stack.metrics("usage")

    commands = "aitbc_keys_commands_total"
    assert moved(keys_before, keys_after, commands, command="create_account", outcome="ok") == 2
    assert moved(keys_before, keys_after, commands, command="create_key", outcome="ok") == 2
    assert moved(keys_before, keys_after, commands, command="revoke_key", outcome="rejected") == 1
    timed = "aitbc_keys_command_duration_seconds_count"
    assert moved(keys_before, keys_after, timed, command="create_key") == 2
    assert moved(keys_before, keys_after, "aitbc_keys_check_batch_size_count") >= 1  # its 1st use
    assert moved(keys_before, keys_after, "aitbc_keys_check_batch_size_sum") >= 1

    partition = str(partition_of(account))
    decisions = "aitbc_usage_decisions_total"
    counted = {
        outcome: moved(usage_before, usage_after, decisions, partition=partition, outcome=outcome)
        for outcome in ("admitted", "limited")
    }
    assert counted == {"admitted": admitted, "limited": limited}
    everywhere = moved(usage_before, usage_after, decisions)
    assert everywhere == admitted + limited  # no other partition counted this account's

    assert_no_secrets_or_ids(
        [stack.metrics(name) for name in ("keys", "usage", "api")],
        [signed_up["master_key"]["key"], made.json()["key"], theirs["key"]],
        [account, other["account_id"], made.json()["key_id"], theirs["key_id"]],
    )


def assert_no_secrets_or_ids(texts: list[str], keys: list[str], ids: list[str]) -> None:
    for text in texts:
        assert samples(text)  # it parses, and says something
        assert plaintext_keys(text) == set()
        assert HEX_64.search(text) is None
        for secret in (*keys, *(hash_key(key) for key in keys), *ids):
            assert secret not in text


def test_the_gauges_read_a_quiet_system(stack: Stack, api: httpx.Client) -> None:
    signed_up = api.post("/v1/accounts", json={"name": "gauges"}).json()  # something to relay
    master = {"X-API-Key": signed_up["master_key"]["key"]}
    assert api.get("/v1/jobs", headers=master).status_code == 200  # a usage event to count

    def keys(name: str) -> Callable[[], float]:
        return lambda: value(stack.metrics("keys"), name)

    def usage(name: str) -> Callable[[], float]:
        return lambda: value(stack.metrics("usage"), name)

    relay_lag, aggregates_lag = keys("aitbc_keys_relay_lag_events"), usage(AGGREGATES_LAG)
    assert wait_for(lambda: relay_lag() == 0) is not None, relay_lag()
    assert wait_for(lambda: aggregates_lag() == 0) is not None, aggregates_lag()
    assert usage("aitbc_usage_partitions_owned")() == USAGE_PARTITIONS  # the only usage process
    assert 0 <= usage("aitbc_usage_snapshot_age_seconds")() < 5  # saved every 0.2 s
    families = {sample.name for sample in samples(stack.metrics("keys"))}
    assert {"aitbc_keys_relay_publish_failures_total", "aitbc_key_events_refused_total"} <= families
    assert "aitbc_usage_events_refused_total" in {s.name for s in samples(stack.metrics("usage"))}
