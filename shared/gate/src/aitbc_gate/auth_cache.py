"""The edge's auth cache: what the keys service said about each key in use, kept true by events."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import msgspec

from aitbc_contracts.messages import KeyFacts

Digests = bytes | set[bytes]  # an id's digests: one, bare, or a set of several


class AuthCache:
    """key digest -> KeyFacts, bounded, with a short negative cache for unknown digests.

    Entries stay true because the key event stream evicts them (`evict_key`, `evict_account`);
    the TTL only bounds the damage of an event this edge never saw. `generation` moves on every
    eviction and each evicted id remembers it for a while, so an answer about that key or
    account fetched before its eviction is never cached after it.

    Unchecked entries. While the key event stream is out of reach (`lost`: the bus connection
    is gone), and after `clear` (back, but events may have passed unseen), the entries are not
    dropped but marked unchecked. An unchecked entry is asked about again before it is trusted,
    and serves only when the keys service cannot answer (`get(stale=True)`), for at most
    `stale_max` seconds after the stream was lost (or cleared); after that the key answers 503
    until the keys service can be asked. So a NATS restart does not turn cached keys away, and
    a key revoked during an outage is not served for long. `found` (the reader resumed and
    applied every event published meanwhile) makes the entries true again. An answer the keys
    service gives meanwhile is true when given, but no event would evict it: while the stream
    is lost, every entry is unchecked again each `lost_ttl` seconds (a stream that stalls while
    the keys service answers: a mirror whose source moved, aitbc_runtime.follower), kept to
    serve as a stale fact should the keys service stop answering too.

    Memory per key, as an edge holds one entry per key in use: the 32-byte digest rather than
    its 64-character hex, and an id's index holds its one digest bare, not in a set (a set
    costs ~200 B); it becomes a set only for an id with several (an account's keys, a
    regenerated key in grace). msgspec gives every decoded KeyFacts the Literal's own str
    for `kind` and `plan`, so those are shared already.
    """

    EVICTIONS_KEPT = 10_000  # ids remembered; far more than can be in flight in one check

    def __init__(
        self,
        size: int,
        ttl: float,
        negative_size: int,
        negative_ttl: float,
        stale_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        lost_ttl: float = 1.0,
    ) -> None:
        self.size, self.ttl = size, ttl
        self.negative_size, self.negative_ttl = negative_size, negative_ttl
        self.stale_max, self.lost_ttl = stale_max, lost_ttl
        self._clock = clock
        self.generation = 0
        self._facts: dict[bytes, tuple[KeyFacts, float, int]] = {}  # facts, until, generation
        self._unknown: dict[bytes, float] = {}
        self._by_key: dict[str, Digests] = {}
        self._by_account: dict[str, Digests] = {}
        self._evicted: dict[str, int] = {}  # key or account id -> generation of its eviction
        self._floor = 0
        self._checked_from = 0  # entries put at an older generation are unchecked
        self._stale_until = 0.0  # unchecked entries serve as stale facts until then
        self._lost_at: float | None = None  # when the key event stream went out of reach
        self._trusted_from = 0  # what _checked_from was before that
        self._recheck_at = 0.0  # while lost: when every entry is unchecked again

    def __len__(self) -> int:
        return len(self._facts)

    def get(self, digest: bytes, stale: bool = False) -> KeyFacts | None:
        entry = self._facts.get(digest)
        if entry is None:
            return None
        now = self._clock()
        if entry[1] < now:
            self._drop(digest)
            return None
        if self._lost_at is not None and now >= self._recheck_at:
            self._uncheck(now)
        if entry[2] < self._checked_from and not (stale and now < self._stale_until):
            return None
        return entry[0]

    def _uncheck(self, now: float) -> None:
        """Every entry is asked about again before it is trusted (the stream is lost)."""
        self.generation += 1
        self._checked_from = self.generation
        self._recheck_at = now + self.lost_ttl

    def is_unknown(self, digest: bytes) -> bool:
        until = self._unknown.get(digest)
        return until is not None and until >= self._clock()

    def put(self, digest: bytes, facts: KeyFacts, generation: int) -> None:
        if generation < self._floor:
            return  # asked before evictions this cache no longer remembers one by one
        evicted = self._evicted
        if max(evicted.get(facts.key_id, -1), evicted.get(facts.account_id, -1)) > generation:
            return  # evicted while this answer was in flight: it may be stale
        if digest not in self._facts and len(self._facts) >= self.size:
            self._drop(next(iter(self._facts)))  # oldest first
        # The TTL spread over +-10%: keys cached together (a warm-up, a restart) do not all
        # expire in the same second and come back to the keys service as one burst.
        until = self._clock() + self.ttl * (0.9 + 0.2 * random.random())
        self._facts[digest] = (facts, until, generation)
        _add(self._by_key, facts.key_id, digest)
        _add(self._by_account, facts.account_id, digest)

    def put_unknown(self, digest: bytes) -> None:
        if len(self._unknown) >= self.negative_size:
            self._unknown.pop(next(iter(self._unknown)))
        self._unknown[digest] = self._clock() + self.negative_ttl

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
        for digest in _each(self._by_key.pop(key_id, None)):
            self._drop(digest)

    def revoke_key(self, key_id: str) -> None:
        """The key was revoked (an event): its entries say so from now on, checked, since a
        revoked key stays revoked; an answer about it asked before is refused, as on an
        eviction. So a revocation read after an outage refuses the key with no one to ask."""
        self._mark(key_id)
        for digest in _each(self._by_key.get(key_id)):
            facts, until, _ = self._facts[digest]  # the index holds only cached digests
            self._facts[digest] = (
                msgspec.structs.replace(facts, revoked=True),
                until,
                self.generation,
            )

    def evict_account(self, account_id: str) -> None:
        self._mark(account_id)
        for digest in _each(self._by_account.pop(account_id, None)):
            self._drop(digest)

    def lost(self) -> None:
        """The key event stream is out of reach: what an entry says may change unseen. Every
        entry is unchecked until the stream is `found` again (or the cache cleared)."""
        if self._lost_at is not None:
            return
        self._lost_at = self._clock()
        self._trusted_from = self._checked_from
        self._uncheck(self._lost_at)
        self._stale_until = self._lost_at + self.stale_max

    def found(self) -> None:
        """The stream was followed on from where it was lost, and every event published
        meanwhile has been applied: the entries it did not evict are as true as before."""
        if self._lost_at is not None:
            self._lost_at = None
            self._checked_from = self._trusted_from

    def clear(self) -> None:
        """Events may have passed unseen: every entry is unchecked, serving as stale facts for
        `stale_max` seconds after the stream was lost (now, if it was not)."""
        since = self._clock() if self._lost_at is None else self._lost_at
        self._lost_at = None
        self._stale_until = since + self.stale_max
        self.generation += 1
        self._floor = self._checked_from = self.generation
        self._unknown.clear()

    def _drop(self, digest: bytes) -> None:
        entry = self._facts.pop(digest, None)
        if entry is None:
            return
        facts = entry[0]
        _remove(self._by_key, facts.key_id, digest)
        _remove(self._by_account, facts.account_id, digest)


def _add(index: dict[str, Digests], name: str, digest: bytes) -> None:
    held = index.get(name)
    if held is None or held == digest:
        index[name] = digest
    elif isinstance(held, bytes):
        index[name] = {held, digest}
    else:
        held.add(digest)


def _remove(index: dict[str, Digests], name: str, digest: bytes) -> None:
    held = index.get(name)
    if held is None or held == digest:
        index.pop(name, None)
    elif isinstance(held, set):
        held.discard(digest)
        if len(held) == 1:
            index[name] = held.pop()  # bare again
        elif not held:
            del index[name]


def _each(held: Digests | None) -> list[bytes]:
    if held is None:
        return []
    return [held] if isinstance(held, bytes) else list(held)
