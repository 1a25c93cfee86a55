"""The edge's cache misses: batched into CheckKeys messages, one question per hash in flight,
and each caller still judging its own answer (negative cache, 503 fallback, evictions)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, key_digest
from aitbc_contracts.subjects import KEYS_CHECK
from aitbc_gate.auth import AuthCache, Authenticator
from aitbc_gate.errors import ApiError
from aitbc_gate.key_checks import KeyChecks
from aitbc_gate.throttle import FailureThrottle
from tests.unit.waiting import until


def facts(n: int) -> m.KeyFacts:
    return m.KeyFacts(f"key_{n}", f"acc_{n}", "standard", "free", revoked=False)


class Bus:
    """A fake NATS: records each CheckKeys, answers when released, per `known` hash."""

    def __init__(self) -> None:
        self.sent: list[list[str]] = []
        self.known: dict[str, m.KeyFacts] = {}
        self.release = asyncio.Event()
        self.release.set()
        self.whole: bytes | None = None  # a reply for the whole message instead
        self.is_connected = True

    async def request(
        self, subject: str, payload: bytes, timeout: float, headers: object = None
    ) -> SimpleNamespace:
        assert subject == KEYS_CHECK
        hashes = m.check_decoder.decode(payload).key_hashes
        self.sent.append(hashes)
        await self.release.wait()
        if self.whole is not None:
            return SimpleNamespace(data=self.whole)
        unknown = m.Rejected(m.Code.INVALID_API_KEY, "unknown API key")
        replies = [self.known.get(h, unknown) for h in hashes]
        return SimpleNamespace(data=m.encoder.encode(m.CheckedKeys(replies)))


def authenticator(bus: Bus) -> Authenticator:
    cache = AuthCache(size=100, ttl=60, negative_size=100, negative_ttl=60)
    keys = KeyChecks(bus, timeout=5)  # type: ignore[arg-type]
    return Authenticator(cache, keys, FailureThrottle(1000))


async def outcome(auth: Authenticator, key: str) -> str:
    try:
        return (await auth.authenticate(key, "192.0.2.1")).key_id
    except ApiError as exc:
        return f"{exc.status} {exc.code}"


async def test_the_misses_of_a_burst_share_one_message_and_one_question_per_hash() -> None:
    bus = Bus()
    keys = [generate_key() for _ in range(5)]
    for n, key in enumerate(keys[:4]):
        bus.known[hash_key(key)] = facts(n)
    auth = authenticator(bus)
    burst = [*keys, keys[0], keys[0]]  # one key three times at once
    results = await asyncio.gather(*(outcome(auth, key) for key in burst))
    assert results == ["key_0", "key_1", "key_2", "key_3", "401 INVALID_API_KEY", "key_0", "key_0"]
    assert bus.sent == [[hash_key(key) for key in keys]]  # one message, each hash once
    assert auth.cache.is_unknown(key_digest(keys[4]))  # the unknown one is negatively cached
    assert await outcome(auth, keys[1]) == "key_1" and len(bus.sent) == 1  # and now cached


async def test_misses_during_a_round_trip_gather_for_the_next_message() -> None:
    bus = Bus()
    keys = [generate_key() for _ in range(20)]
    bus.known = {hash_key(key): facts(n) for n, key in enumerate(keys)}
    auth = authenticator(bus)
    bus.release.clear()
    first = [asyncio.ensure_future(outcome(auth, key)) for key in keys[:4]]
    await asyncio.sleep(0)
    for key in keys[:4]:  # each its own turn of the loop: four messages out, the limit
        first.append(asyncio.ensure_future(outcome(auth, key)))
    later = [asyncio.ensure_future(outcome(auth, key)) for key in keys[4:]]
    await until(lambda: len(bus.sent) == 1)
    await asyncio.sleep(0.01)  # the later ones gather meanwhile (were any sent, it would show)
    bus.release.set()
    await asyncio.gather(*first, *later)
    assert [len(hashes) for hashes in bus.sent] == [4, 16]


async def test_a_refused_message_is_no_answer_for_any_of_its_hashes() -> None:
    bus = Bus()
    cached, fresh = generate_key(), generate_key()
    bus.known = {hash_key(cached): facts(1), hash_key(fresh): facts(2)}
    auth = authenticator(bus)
    assert await outcome(auth, cached) == "key_1"
    auth.cache.clear()  # a reconnect: the entry is unchecked, yet serves while keys is away
    bus.whole = m.encoder.encode(m.Rejected(m.Code.VALIDATION_ERROR, "malformed key check"))
    results = await asyncio.gather(outcome(auth, cached), outcome(auth, fresh))
    assert results == ["key_1", "503 SERVICE_UNAVAILABLE"]
    assert bus.sent[-1] == [hash_key(cached), hash_key(fresh)]
    assert not auth.cache.is_unknown(key_digest(fresh))  # not taken for an unknown key
    bus.whole = b'{"type": "checked_keys", "replies": []}'  # an answer short of items
    assert await outcome(auth, fresh) == "503 SERVICE_UNAVAILABLE"


def held_key() -> tuple[Bus, Authenticator, str]:
    """A known key, and a bus that holds its answers until released."""
    bus = Bus()
    key = generate_key()
    bus.known[hash_key(key)] = facts(1)
    bus.release.clear()
    return bus, authenticator(bus), key


async def test_an_eviction_during_a_shared_question_refuses_its_answer() -> None:
    bus, auth, key = held_key()
    before = asyncio.ensure_future(outcome(auth, key))
    await until(lambda: bus.sent)  # the question is out
    auth.cache.evict_key("key_1")  # e.g. a revocation, while the question is out
    after = asyncio.ensure_future(outcome(auth, key))  # joins the question asked before it
    await asyncio.sleep(0)
    bus.release.set()
    assert await asyncio.gather(before, after) == ["key_1", "key_1"]
    assert len(bus.sent) == 1
    assert auth.cache.get(key_digest(key)) is None  # neither caller cached the older answer


async def test_a_caller_that_gives_up_leaves_the_question_to_the_others() -> None:
    bus, auth, key = held_key()
    quitter = asyncio.ensure_future(outcome(auth, key))
    stayer = asyncio.ensure_future(outcome(auth, key))
    await until(lambda: bus.sent)  # one question, for both
    quitter.cancel()
    bus.release.set()
    assert await stayer == "key_1"
    with pytest.raises(asyncio.CancelledError):
        await quitter


async def test_a_check_while_the_bus_is_away_is_unavailable_at_once() -> None:
    """No answer can come while NATS is reconnecting: the key is answered from what is left
    (a stale entry, or 503) now, not after KEYS_TIMEOUT."""
    bus = Bus()
    bus.is_connected = False
    bus.release.clear()  # a request would hang until the test's timeout
    auth = authenticator(bus)
    assert await asyncio.wait_for(outcome(auth, generate_key()), 1) == "503 SERVICE_UNAVAILABLE"
    assert bus.sent == []
