"""Who is calling: key extraction, local checks, and the auth cache before the keys service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aitbc_api import metrics
from aitbc_api.clients import KeysClient
from aitbc_api.errors import ApiError, from_rejection
from aitbc_api.throttle import FailureThrottle
from aitbc_api.types import Conn
from aitbc_contracts.keyformat import hash_key, is_well_formed
from aitbc_contracts.messages import Code, KeyFacts, Rejected

KeyAnswer = KeyFacts | Rejected  # what the keys service says about one hash

API_KEY_HEADER = "x-api-key"
API_KEY_QUERY = "api_key"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    account_id: str
    kind: str
    plan: str
    rate_limit: int | None

    @property
    def is_master(self) -> bool:
        return self.kind == "master"


def presented_key(connection: Conn) -> str | None:
    """The key from `X-API-Key`, which wins, else from the `api_key` query parameter."""
    return connection.headers.get(API_KEY_HEADER) or connection.query_params.get(API_KEY_QUERY)


class AuthCache:
    """key hash -> KeyFacts, bounded, with a short negative cache for unknown hashes.

    Entries stay true because the key event stream evicts them (`evict_key`, `evict_account`);
    the TTL only bounds the damage of an event this edge never saw. `generation` moves on every
    eviction and each evicted id remembers it for a while, so an answer about that key or
    account fetched before its eviction is never cached after it.

    `clear` (after a reconnect: events may have passed unseen) does not drop the entries: it
    marks them unchecked. An unchecked entry is asked about again before it is trusted, and
    serves only when the keys service cannot answer (`get(stale=True)`), as any cached key does
    while the keys service is down; so a NATS restart does not turn cached keys away.
    """

    EVICTIONS_KEPT = 10_000  # ids remembered; far more than can be in flight in one check

    def __init__(self, size: int, ttl: float, negative_size: int, negative_ttl: float) -> None:
        self.size, self.ttl = size, ttl
        self.negative_size, self.negative_ttl = negative_size, negative_ttl
        self.generation = 0
        self._facts: dict[str, tuple[KeyFacts, float, int]] = {}  # facts, until, generation
        self._unknown: dict[str, float] = {}
        self._by_key: dict[str, set[str]] = {}
        self._by_account: dict[str, set[str]] = {}
        self._evicted: dict[str, int] = {}  # key or account id -> generation of its eviction
        self._floor = 0
        self._checked_from = 0  # entries put at an older generation are unchecked

    def __len__(self) -> int:
        return len(self._facts)

    def get(self, key_hash: str, stale: bool = False) -> KeyFacts | None:
        entry = self._facts.get(key_hash)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            self._drop(key_hash)
            return None
        if entry[2] < self._checked_from and not stale:
            return None
        return entry[0]

    def is_unknown(self, key_hash: str) -> bool:
        until = self._unknown.get(key_hash)
        return until is not None and until >= time.monotonic()

    def put(self, key_hash: str, facts: KeyFacts, generation: int) -> None:
        if generation < self._floor:
            return  # asked before evictions this cache no longer remembers one by one
        evicted = self._evicted
        if max(evicted.get(facts.key_id, -1), evicted.get(facts.account_id, -1)) > generation:
            return  # evicted while this answer was in flight: it may be stale
        if key_hash not in self._facts and len(self._facts) >= self.size:
            self._drop(next(iter(self._facts)))  # oldest first
        self._facts[key_hash] = (facts, time.monotonic() + self.ttl, generation)
        self._by_key.setdefault(facts.key_id, set()).add(key_hash)
        self._by_account.setdefault(facts.account_id, set()).add(key_hash)

    def put_unknown(self, key_hash: str) -> None:
        if len(self._unknown) >= self.negative_size:
            self._unknown.pop(next(iter(self._unknown)))
        self._unknown[key_hash] = time.monotonic() + self.negative_ttl

    def _mark(self, name: str) -> None:
        self.generation += 1
        if len(self._evicted) >= self.EVICTIONS_KEPT:
            # Forget the oldest half; answers asked before the newest forgotten one are refused.
            items = list(self._evicted.items())
            half = self.EVICTIONS_KEPT // 2
            self._floor = max(self._floor, items[half - 1][1])
            self._evicted = dict(items[half:])
        self._evicted.pop(name, None)
        self._evicted[name] = self.generation

    def evict_key(self, key_id: str) -> None:
        self._mark(key_id)
        for key_hash in self._by_key.pop(key_id, set()).copy():
            self._drop(key_hash)

    def evict_account(self, account_id: str) -> None:
        self._mark(account_id)
        for key_hash in self._by_account.pop(account_id, set()).copy():
            self._drop(key_hash)

    def clear(self) -> None:
        self.generation += 1
        self._floor = self._checked_from = self.generation
        self._unknown.clear()

    def _drop(self, key_hash: str) -> None:
        entry = self._facts.pop(key_hash, None)
        if entry is None:
            return
        facts = entry[0]
        for index, name in ((self._by_key, facts.key_id), (self._by_account, facts.account_id)):
            hashes = index.get(name)
            if hashes is not None:
                hashes.discard(key_hash)
                if not hashes:
                    del index[name]


def _invalid(message: str = "The provided API key is invalid") -> ApiError:
    return ApiError(401, Code.INVALID_API_KEY, message)


class Authenticator:
    """Turns a presented key into a Principal, or an ApiError with a stable code."""

    def __init__(self, cache: AuthCache, keys: KeysClient, throttle: FailureThrottle) -> None:
        self.cache = cache
        self.keys = keys
        self.throttle = throttle
        self._lookups: dict[str, asyncio.Task[tuple[int, KeyAnswer]]] = {}

    async def facts(self, key: str | None, client: str) -> KeyFacts:
        if not key:
            raise ApiError(
                401, Code.MISSING_API_KEY, "An API key is required: send it in the X-API-Key header"
            )
        well_formed = is_well_formed(key)  # prefix, length, alphabet, checksum: no bus needed
        key_hash = hash_key(key) if well_formed else ""
        facts = self.cache.get(key_hash) if well_formed else None
        if facts is not None:
            return facts
        now = time.time()
        if self.throttle.blocked(client, now):
            metrics.inc("aitbc_auth_throttled_total")
            raise ApiError(
                429,
                Code.TOO_MANY_INVALID_KEYS,
                "Too many invalid API keys from this address; try again later",
                headers={"Retry-After": str(self.throttle.retry_after(now))},
            )
        if not well_formed or self.cache.is_unknown(key_hash):
            self.throttle.failed(client, now)
            raise _invalid()

        def unknown() -> None:
            self.cache.put_unknown(key_hash)
            self.throttle.failed(client, now)

        return await self._ask(key_hash, unknown)

    async def _ask(self, key_hash: str, on_unknown: Callable[[], None] = lambda: None) -> KeyFacts:
        """A cache miss: ask the keys service. While it cannot answer (503), an entry kept
        unchecked since a reconnect still serves; key events evict such entries as usual."""
        try:
            generation, reply = await self._lookup(key_hash)
            if isinstance(reply, Rejected):
                if reply.code == Code.INVALID_API_KEY:
                    on_unknown()
                raise from_rejection(reply)
        except ApiError as exc:
            stale = self.cache.get(key_hash, stale=True) if exc.status == 503 else None
            if stale is None:
                raise
            metrics.inc("aitbc_auth_unchecked_total")
            return stale
        self.cache.put(key_hash, reply, generation)
        return reply

    def _lookup(self, key_hash: str) -> Awaitable[tuple[int, KeyAnswer]]:
        """One question per hash in flight: concurrent misses of a key share it, each judging
        the reply for itself (its own throttle, negative cache and stale fallback). Each gets
        the generation the question was asked at, so an eviction while it was out still
        refuses the answer. A task, shielded: a caller that gives up leaves it to the others."""
        lookup = self._lookups.get(key_hash)
        if lookup is None:
            lookup = asyncio.create_task(self._check(key_hash, self.cache.generation))
            self._lookups[key_hash] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(key_hash, None))
            lookup.add_done_callback(_retrieve)
        return asyncio.shield(lookup)

    async def _check(self, key_hash: str, generation: int) -> tuple[int, KeyAnswer]:
        metrics.inc("aitbc_auth_lookups_total")
        return generation, await self.keys.check(key_hash)

    async def authenticate(self, key: str | None, client: str = "") -> Principal:
        return principal_of(await self.facts(key, client))

    async def authenticate_hash(self, key_hash: str) -> Principal:
        """The same check for a key known only by its hash (a dashboard session's master key):
        the same cache, kept true by the key event stream, and the same answers."""
        return principal_of(self.cache.get(key_hash) or await self._ask(key_hash))


def _retrieve(task: asyncio.Task[object]) -> None:
    """Mark a failed lookup's exception seen: every caller may have given up on it."""
    if not task.cancelled():
        task.exception()


def principal_of(facts: KeyFacts) -> Principal:
    """Who the facts say is calling, unless the key is revoked, expired or replaced."""
    if facts.revoked:
        raise ApiError(401, Code.API_KEY_REVOKED, "This API key has been revoked")
    now = datetime.now(UTC)
    if facts.expires_at is not None and facts.expires_at <= now:
        raise ApiError(401, Code.API_KEY_EXPIRED, "This API key has expired")
    if facts.secret_valid_until is not None and facts.secret_valid_until <= now:
        raise _invalid("This API key was regenerated; use the new secret")
    return Principal(facts.key_id, facts.account_id, facts.kind, facts.plan, facts.rate_limit)
