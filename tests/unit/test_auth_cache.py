"""The edge's auth cache: bounded, and never holding an answer an event has made stale."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from aitbc_contracts.events import KeyRestricted, KeyRevoked, PlanChanged, encode_event
from aitbc_contracts.messages import KeyFacts
from aitbc_contracts.subjects import POSITION_HEADER
from aitbc_gate.auth import query_without_key
from aitbc_gate.auth_cache import AuthCache
from aitbc_gate.cache_invalidation import CacheInvalidation
from aitbc_runtime.key_events import KeyEventReader
from tests.key_messages import Chained


def facts(key_id: str = "key_1", account_id: str = "acc_1") -> KeyFacts:
    return KeyFacts(
        key_id=key_id, account_id=account_id, kind="standard", plan="free", revoked=False
    )


def test_put_get_and_evict_by_key_and_account() -> None:
    cache = AuthCache(size=10, ttl=60, negative_size=10, negative_ttl=5)
    cache.put(b"h1", facts("key_1", "acc_1"), cache.generation)
    cache.put(b"h2", facts("key_2", "acc_1"), cache.generation)
    cache.put(b"h3", facts("key_3", "acc_2"), cache.generation)
    cache.evict_key("key_1")
    assert cache.get(b"h1") is None and cache.get(b"h2") is not None
    cache.evict_account("acc_1")
    assert cache.get(b"h2") is None and cache.get(b"h3") is not None


def test_an_answer_fetched_before_an_eviction_is_not_cached() -> None:
    cache = AuthCache(size=10, ttl=60, negative_size=10, negative_ttl=5)
    asked_at = cache.generation
    cache.evict_key("key_1")  # a revocation arrives while the check is in flight
    cache.put(b"h1", facts(), asked_at)
    assert cache.get(b"h1") is None


def test_size_is_bounded_oldest_first() -> None:
    cache = AuthCache(size=3, ttl=60, negative_size=2, negative_ttl=5)
    for i in range(5):
        cache.put(f"h{i}".encode(), facts(f"key_{i}"), cache.generation)
        cache.put_unknown(f"u{i}".encode())
    assert len(cache) == 3 and cache.get(b"h0") is None and cache.get(b"h4") is not None
    assert not cache.is_unknown(b"u0") and cache.is_unknown(b"u4")
    cache.evict_key("key_0")  # indexes stayed consistent after the bound dropped it


def test_entries_expire() -> None:
    cache = AuthCache(size=3, ttl=0.01, negative_size=2, negative_ttl=0.01)
    cache.put(b"h", facts(), cache.generation)
    cache.put_unknown(b"u")
    time.sleep(0.02)
    assert cache.get(b"h") is None and not cache.is_unknown(b"u")


def test_entries_cached_together_do_not_expire_together() -> None:
    cache = AuthCache(size=1000, ttl=100, negative_size=2, negative_ttl=5)
    before = time.monotonic()
    for i in range(200):
        cache.put(b"h%d" % i, facts(key_id=f"key_{i:016x}"), cache.generation)
    after = time.monotonic()  # each was put in between, however long a loaded machine took
    untils = [until for _, until, _ in cache._facts.values()]
    assert all(before + 90 <= until <= after + 110 for until in untils)
    assert max(untils) - min(untils) > 10 + (after - before)  # spread over the +-10% window


def test_key_events_evict_or_revoke_what_they_change() -> None:
    cache = AuthCache(size=10, ttl=60, negative_size=10, negative_ttl=5)
    cache.put(b"h1", facts("key_1", "acc_1"), cache.generation)
    cache.put(b"h2", facts("key_2", "acc_2"), cache.generation)
    cache.put(b"h3", facts("key_3", "acc_3"), cache.generation)
    reader = KeyEventReader(None, [CacheInvalidation(cache)], "test")  # type: ignore[arg-type]
    at = datetime.now(UTC)
    common = {"event_id": "evt_1", "version": 2, "occurred_at": at}
    revoked = KeyRevoked(stream_id="key_1", account_id="acc_1", key_id="key_1", **common)
    log = Chained(6, "0" * 64)  # the stream as the relay publishes it
    reader.receive(*log.message(revoked))
    kept = cache.get(b"h1")  # a revocation is final: kept as such, the key refused from here
    assert kept is not None and kept.revoked and cache.get(b"h2") is not None
    plan = PlanChanged(
        stream_id="acc_2", account_id="acc_2", plan="pro", previous_plan="free", **common
    )
    reader.receive(*log.message(plan))
    assert cache.get(b"h2") is None and cache.get(b"h3") is not None
    reader.receive(b"garbage", {POSITION_HEADER: "9"})  # refused by the reader, not raised
    reader.receive(encode_event(revoked), None)  # no position: not an event of the log
    assert reader.refused.total() == 2 and cache.get(b"h3") is not None
    reader.reset()  # a reconnect: every entry is asked about again before it is trusted
    assert cache.get(b"h3") is None and cache.get(b"h3", stale=True) is not None


def test_a_restriction_evicts_the_key_so_its_next_request_is_checked_by_it() -> None:
    cache = AuthCache(size=10, ttl=60, negative_size=10, negative_ttl=5)
    cache.put(b"h1", facts("key_1", "acc_1"), cache.generation)
    cache.put(b"h2", facts("key_2", "acc_1"), cache.generation)
    restricted = KeyRestricted(
        event_id="evt_1",
        stream_id="key_1",
        version=2,
        occurred_at=datetime.now(UTC),
        account_id="acc_1",
        key_id="key_1",
        scopes=("jobs:read",),
    )
    CacheInvalidation(cache).process(restricted, 7)
    assert cache.get(b"h1") is None and cache.get(b"h2") is not None


def test_the_key_is_removed_from_the_query_string() -> None:
    assert query_without_key(b"a=1&api_key=secret&b=2") == b"a=1&b=2"
    assert query_without_key(b"a=1&b=x+y") == b"a=1&b=x+y"  # untouched when no key
    assert query_without_key(b"a=1&api%5Fkey=secret") == b"a=1"  # another spelling of api_key
    assert query_without_key(b"b=x%20y") == b"b=x%20y"  # read, but no key: untouched
    assert query_without_key(b"api_key=s&api_key=t") == b""
    # the other parameters go on byte for byte, however they are encoded
    assert query_without_key(b"api_key=s&q=%FF&r=caf\xc3\xa9&s&t=a%20b") == (
        b"q=%FF&r=caf\xc3\xa9&s&t=a%20b"
    )


def test_an_eviction_of_another_key_does_not_stop_caching() -> None:
    cache = AuthCache(size=10, ttl=60, negative_size=10, negative_ttl=5)
    asked_at = cache.generation
    cache.evict_key("key_other")
    cache.evict_account("acc_other")
    cache.put(b"h1", facts("key_1", "acc_1"), asked_at)
    assert cache.get(b"h1") is not None


def test_a_clear_or_forgotten_evictions_refuse_older_answers() -> None:
    cache = AuthCache(size=10, ttl=60, negative_size=10, negative_ttl=5)
    asked_at = cache.generation
    cache.clear()
    cache.put(b"h1", facts(), asked_at)
    assert cache.get(b"h1") is None
    cache = AuthCache(size=10, ttl=60, negative_size=10, negative_ttl=5)
    asked_at = cache.generation
    cache.evict_key("key_1")
    for i in range(AuthCache.EVICTIONS_KEPT):
        cache.evict_key(f"key_x{i}")  # key_1's eviction is forgotten one by one
    cache.put(b"h1", facts("key_1"), asked_at)
    assert cache.get(b"h1") is None


def test_failure_throttle_counts_per_address_per_minute() -> None:
    from aitbc_gate.throttle import FailureThrottle

    throttle = FailureThrottle(budget=3, max_addresses=2)
    t0 = 1_800_000_000.0
    for _ in range(3):
        assert not throttle.blocked("a", t0)
        throttle.failed("a", t0)
    assert throttle.blocked("a", t0) and not throttle.blocked("b", t0)
    assert throttle.retry_after(t0 + 10) == 50
    assert not throttle.blocked("a", t0 + 60)  # a new minute forgives
    throttle.failed("b", t0 + 60)
    throttle.failed("c", t0 + 60)
    throttle.failed("d", t0 + 60)  # beyond max_addresses: not tracked, memory stays bounded
    assert set(throttle.counts) == {"b", "c"}


def test_a_key_with_two_secrets_is_evicted_whole_and_its_index_shrinks_back() -> None:
    cache = AuthCache(size=10, ttl=60, negative_size=10, negative_ttl=5)
    cache.put(b"old", facts("key_1"), cache.generation)  # a regenerated key in its grace
    cache.put(b"new", facts("key_1"), cache.generation)
    cache.put(b"other", facts("key_2"), cache.generation)  # the same account
    assert cache._by_key == {"key_1": {b"old", b"new"}, "key_2": b"other"}
    cache._drop(b"old")  # e.g. pushed out by the bound
    assert cache._by_key["key_1"] == b"new" and cache._by_account["acc_1"] == {b"new", b"other"}
    cache.evict_key("key_1")
    assert cache.get(b"new") is None and cache.get(b"other") is not None
    assert cache._by_key == {"key_2": b"other"} and cache._by_account == {"acc_1": b"other"}
    cache.evict_account("acc_1")
    assert len(cache) == 0 and not cache._by_key and not cache._by_account
