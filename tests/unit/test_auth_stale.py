"""How long the edge serves facts it cannot check: an entry unchecked since the key event stream
went out of reach serves, while the keys service cannot answer either, for AUTH_STALE_MAX
seconds after the loss, then 503. A reader that resumed and caught up makes them true again;
a revocation read from the stream refuses the key at once, with no one to ask."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from aitbc_api.settings import Settings
from aitbc_contracts.messages import Code
from aitbc_gate.auth import AuthCache, Authenticator
from aitbc_gate.cache_invalidation import CacheInvalidation
from aitbc_gate.errors import ApiError
from aitbc_gate.throttle import FailureThrottle
from tests.unit.keys_domain_events import revoked
from tests.unit.test_auth_reconnect import FACTS, KEY, Keys

STALE_MAX = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authenticator(keys: Keys, clock: Clock) -> Authenticator:
    cache = AuthCache(10, 3600, 10, 5, stale_max=STALE_MAX, clock=clock)
    return Authenticator(cache, keys, FailureThrottle(1000))  # type: ignore[arg-type]


def answer(auth: Authenticator) -> int | str:
    """200 with the key's id, or the refusal's status."""
    try:
        return asyncio.run(auth.authenticate(KEY, "192.0.2.1")).key_id
    except ApiError as exc:
        return exc.status


def test_the_stale_bound_is_a_setting_of_thirty_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().auth_stale_max == 30.0
    monkeypatch.setenv("AUTH_STALE_MAX", "5")
    assert Settings.from_env().auth_stale_max == 5.0


def test_after_a_reset_unchecked_facts_serve_for_the_stale_bound_then_503() -> None:
    keys, clock = Keys(), Clock()
    auth = authenticator(keys, clock)
    assert answer(auth) == "key_1"
    auth.cache.clear()  # events may have passed unseen
    keys.state = "down"
    clock.now += STALE_MAX - 1
    assert answer(auth) == "key_1"  # unchecked, and no one to ask: served, for now
    clock.now += 2
    assert answer(auth) == 503  # not for the cache's whole TTL
    keys.state = "up"
    assert answer(auth) == "key_1"  # checked again: trusted


def test_cached_facts_serve_for_the_bound_after_the_stream_is_lost() -> None:
    keys, clock = Keys(), Clock()
    auth = authenticator(keys, clock)
    answer(auth)
    auth.cache.lost()  # the edge's bus connection is gone: revocations cannot reach it
    keys.state = "down"  # nor can its key checks
    clock.now += STALE_MAX - 1
    assert answer(auth) == "key_1"
    clock.now += 2
    assert answer(auth) == 503
    auth.cache.clear()  # back, but it could not resume: the bound still counts from the loss
    assert answer(auth) == 503


def test_a_reader_that_resumed_and_caught_up_makes_the_entries_true_again() -> None:
    keys, clock = Keys(), Clock()
    auth = authenticator(keys, clock)
    answer(auth)
    auth.cache.lost()
    clock.now += STALE_MAX + 1
    auth.cache.found()  # every event published meanwhile has been applied
    keys.state = "down"
    assert answer(auth) == "key_1" and keys.asked == 1  # trusted, not asked


def test_a_revocation_from_the_stream_refuses_the_key_with_no_one_to_ask() -> None:
    keys, clock = Keys(), Clock()
    auth = authenticator(keys, clock)
    answer(auth)
    auth.cache.lost()
    keys.state = "down"
    CacheInvalidation(auth.cache).process(revoked(FACTS.key_id, account=FACTS.account_id), 7)
    auth.cache.found()
    with pytest.raises(ApiError) as refused:
        asyncio.run(auth.authenticate(KEY, "192.0.2.1"))
    assert refused.value.code == Code.API_KEY_REVOKED
    with pytest.raises(ApiError):
        auth.known(KEY)  # from the cache, without an await


def test_while_the_stream_is_lost_answers_of_the_keys_service_are_checked_again_soon() -> None:
    """A stalled stream (a mirror whose source moved) with the keys service answering: what it
    says is true when said, but no event would evict it, so every entry is asked about again
    each `lost_ttl` and a key revoked meanwhile is refused within it, not the cache's TTL."""
    keys, clock = Keys(), Clock()
    auth = authenticator(keys, clock)
    answer(auth)
    auth.cache.lost()
    assert answer(auth) == "key_1" and keys.asked == 2  # unchecked: asked again
    assert answer(auth) == "key_1" and keys.asked == 2  # the fresh answer serves
    keys.facts = msgspec.structs.replace(FACTS, revoked=True)  # revoked, the event unseen
    clock.now += auth.cache.lost_ttl + 0.01
    assert answer(auth) == 401 and keys.asked == 3
    auth.cache.found()  # caught up: the event came, and the entries are trusted again
    clock.now += 60
    assert answer(auth) == 401 and keys.asked == 3


def test_while_the_stream_is_lost_an_entry_still_serves_when_no_one_can_be_asked() -> None:
    keys, clock = Keys(), Clock()
    auth = authenticator(keys, clock)
    answer(auth)
    auth.cache.lost()
    assert answer(auth) == "key_1" and keys.asked == 2
    keys.state = "down"
    clock.now += auth.cache.lost_ttl + 0.01
    assert answer(auth) == "key_1" and keys.asked == 3  # asked, then served as a stale fact
    clock.now = 1000.0 + STALE_MAX + 1
    assert answer(auth) == 503  # for the stale bound after the loss, as ever
