"""After a NATS reconnect the auth cache's entries are unchecked: asked about again before they
are trusted, yet still serving while the keys service cannot answer (a NATS restart must not
turn cached keys away), and still evicted by the events that follow."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from aitbc_contracts.keyformat import generate_key, key_digest
from aitbc_contracts.messages import Code, KeyFacts, Rejected
from aitbc_gate.auth import AuthCache, Authenticator
from aitbc_gate.errors import ApiError, unavailable
from aitbc_gate.throttle import FailureThrottle

KEY = generate_key()
FACTS = KeyFacts(key_id="key_1", account_id="acc_1", kind="standard", plan="free", revoked=False)


class Keys:
    """A keys service that is up (answers `facts`), down (503), or knows the key no more."""

    def __init__(self) -> None:
        self.state = "up"
        self.asked = 0
        self.facts = FACTS

    async def check(self, key_hash: str) -> KeyFacts | Rejected:
        self.asked += 1
        if self.state == "down":
            raise unavailable("keys")
        if self.state == "unknown":
            return Rejected(Code.INVALID_API_KEY, "unknown API key")
        return self.facts


def authenticator(keys: Keys) -> Authenticator:
    cache = AuthCache(size=10, ttl=60, negative_size=10, negative_ttl=5)
    return Authenticator(cache, keys, FailureThrottle(1000))  # type: ignore[arg-type]


def authenticate(auth: Authenticator) -> str:
    return asyncio.run(auth.authenticate(KEY, "192.0.2.1")).key_id


def test_an_unchecked_entry_serves_while_the_keys_service_is_away() -> None:
    keys = Keys()
    auth = authenticator(keys)
    assert authenticate(auth) == "key_1" and keys.asked == 1
    auth.cache.clear()  # NATS reconnected: events may have been missed
    assert auth.cache.get(key_digest(KEY)) is None
    assert auth.cache.get(key_digest(KEY), stale=True) == FACTS
    keys.state = "down"
    assert authenticate(auth) == "key_1" and keys.asked == 2  # asked first, then served
    keys.state = "up"
    assert authenticate(auth) == "key_1" and keys.asked == 3  # checked again now
    assert authenticate(auth) == "key_1" and keys.asked == 3  # and trusted from then on


def test_an_unchecked_entry_gives_way_to_what_the_keys_service_says() -> None:
    keys = Keys()
    auth = authenticator(keys)
    authenticate(auth)
    auth.cache.clear()
    keys.facts = KeyFacts("key_1", "acc_1", "standard", "free", revoked=True)
    with pytest.raises(ApiError) as refused:
        authenticate(auth)  # revoked while we were away: the keys service says so
    assert refused.value.code == Code.API_KEY_REVOKED
    keys.state = "unknown"
    auth.cache.clear()
    with pytest.raises(ApiError) as refused:
        authenticate(auth)
    assert refused.value.code == Code.INVALID_API_KEY


def test_an_event_after_the_reconnect_evicts_an_unchecked_entry() -> None:
    keys = Keys()
    auth = authenticator(keys)
    authenticate(auth)
    auth.cache.clear()
    auth.cache.evict_key("key_1")  # e.g. a revocation relayed after we reconnected
    keys.state = "down"
    with pytest.raises(ApiError) as refused:
        authenticate(auth)
    assert refused.value.status == 503  # not served from what the event said was wrong


def test_a_cached_key_is_known_without_an_await_and_any_other_is_not() -> None:
    keys = Keys()
    auth = authenticator(keys)
    assert auth.known(KEY) is None and auth.known(None) is None and auth.known("x") is None
    authenticate(auth)  # asked once: cached from now on
    known = auth.known(KEY)
    assert known is not None and known.key_id == "key_1" and keys.asked == 1
    auth.cache.clear()  # unchecked entries are asked about again, not known
    assert auth.known(KEY) is None
    keys.facts = msgspec.structs.replace(FACTS, revoked=True)
    with pytest.raises(ApiError) as refused:
        authenticate(auth)
    assert refused.value.code == Code.API_KEY_REVOKED
    with pytest.raises(ApiError):  # cached revoked: known refuses as authenticate does
        auth.known(KEY)
