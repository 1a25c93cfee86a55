"""Repeated invalid keys from one address are throttled before the bus; others are unaffected."""

from __future__ import annotations

import httpx

from aitbc_contracts.keyformat import generate_key
from tests.e2e.stack import Stack
from tests.e2e.test_rate_limits import early_in_a_minute
from tests.scrape import value


def test_an_address_guessing_keys_is_throttled_and_others_are_not(stack: Stack) -> None:
    # behind a (trusted) local proxy, which names each client in X-Forwarded-For
    edge = stack.add_edge(
        "api-throttled", AUTH_FAILURE_BUDGET="5", TRUSTED_PROXIES="127.0.0.1/32"
    ).start()
    try:
        with httpx.Client(base_url=edge.url, timeout=10) as client:
            master = client.post("/v1/accounts").json()["master_key"]["key"]
            early_in_a_minute()  # the budget is a minute's: a new minute would begin it again
            guesser = {"X-Forwarded-For": "203.0.113.7"}
            other = {"X-Forwarded-For": "198.51.100.1"}
            codes = [
                client.get("/v1/jobs", headers={**guesser, "X-API-Key": key}).json()["error"][
                    "code"
                ]
                for key in [generate_key() for _ in range(4)] + ["junk", "aitbc_x", generate_key()]
            ]
            assert codes == ["INVALID_API_KEY"] * 5 + ["TOO_MANY_INVALID_KEYS"] * 2
            asked = lookups(stack)
            for _ in range(20):  # throttled guesses never reach the keys service
                client.get("/v1/jobs", headers={**guesser, "X-API-Key": generate_key()})
            assert lookups(stack) == asked
            throttled = client.get("/v1/jobs", headers={**guesser, "X-API-Key": master})
            assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
            assert throttled.json()["error"]["code"] == "TOO_MANY_INVALID_KEYS"
            fine = client.get("/v1/jobs", headers={**other, "X-API-Key": master})
            assert fine.status_code == 200
            # now cached on this edge: the same valid key works even from the guessing address
            assert (
                client.get("/v1/jobs", headers={**guesser, "X-API-Key": master}).status_code == 200
            )
    finally:
        edge.stop()


def lookups(stack: Stack, edge: str = "api-throttled") -> float:
    """Keys the edge asked the keys service about (auth cache misses)."""
    return value(stack.metrics(edge), "aitbc_auth_cache_total", result="miss")
