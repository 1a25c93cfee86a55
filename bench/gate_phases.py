"""The gate's memory per cached key, measured in this process: an aitbc_gate AuthCache, with the
gate's default settings, filled with keys' facts as the keys service sends them, and the bytes
it then holds counted with tracemalloc.

In process rather than as a server's RSS (the edge memory phase): the cache alone, without the
rest of a process's growth (buffers, pools, arenas), and exactly, since tracemalloc counts
every allocation that stays. Each key's facts are decoded from a CheckedKeys reply of 100, as
the gate's batched checks receive them (aitbc_gate.key_checks), so each holds its own id
strings and shares the Literal strings of `kind` and `plan` as a real entry does; its digest is
a SHA-256 of random bytes: the 32-byte bytes the gate computes from a request's key.
"""

from __future__ import annotations

import gc
import hashlib
import os
import sys
import tracemalloc
from typing import Any

from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import new_account_id, new_key_id
from aitbc_gate.auth_cache import AuthCache
from aitbc_gate.settings import GateSettings
from bench.common import say
from bench.state import Bench

BATCH = 100  # facts per CheckedKeys reply
SPREADS = (1, 8)  # keys per account: one (every entry its own account in the index), several


def _reply(account_ids: list[str]) -> bytes:
    """A CheckedKeys reply about one new standard key of each of `account_ids`."""
    facts = [
        m.KeyFacts(
            key_id=new_key_id(), account_id=account, kind="standard", plan="enterprise",
            revoked=False,
        )
        for account in account_ids
    ]  # fmt: skip
    return m.encoder.encode(m.CheckedKeys(list(facts)))


def _fill(cache: AuthCache, count: int, keys_per_account: int) -> tuple[bytes, m.KeyFacts]:
    """`count` keys' facts into `cache`; the last key's digest and facts."""
    accounts = [new_account_id() for _ in range(-(-count // keys_per_account))]
    for start in range(0, count, BATCH):
        owners = [accounts[i // keys_per_account] for i in range(start, min(count, start + BATCH))]
        encoded = _reply(owners)  # as the keys service sends it; dropped once decoded
        reply = m.check_reply_decoder.decode(encoded)
        assert isinstance(reply, m.CheckedKeys)
        for facts in reply.replies:
            assert isinstance(facts, m.KeyFacts)
            digest = hashlib.sha256(os.urandom(32)).digest()
            cache.put(digest, facts, cache.generation)
    assert isinstance(facts, m.KeyFacts)
    return digest, facts


def _one_cache(count: int, keys_per_account: int) -> dict[str, Any]:
    """Bytes an AuthCache of `count` keys holds, per key, and of which objects one entry is
    made (the rest: the three tables, by digest, by key id and by account id)."""
    s = GateSettings()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache = AuthCache(
            s.auth_cache_size, s.auth_cache_ttl, s.negative_cache_size, s.negative_cache_ttl
        )
        digest, facts = _fill(cache, count, keys_per_account)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) == count
    parts: dict[str, float] = {
        "digest (32-byte bytes)": sys.getsizeof(digest),
        "KeyFacts": sys.getsizeof(facts),
        "key id (str)": sys.getsizeof(facts.key_id),
        "account id (str)": sys.getsizeof(facts.account_id),
        # the cache's (facts, expiry, generation), its expiry a float of its own
        "entry tuple and its expiry": sys.getsizeof((facts, 0.0, 0)) + sys.getsizeof(0.0),
    }
    parts["tables and index sets (the rest)"] = held / count - sum(parts.values())
    return {
        "keys": count,
        "keys_per_account": keys_per_account,
        "bytes": held,
        "bytes_per_key": held / count,
        "per_key": parts,
    }


async def gate_memory(b: Bench) -> None:
    count = b.config.gate_cache_keys
    say(f"gate memory: an auth cache of {count:,} keys, in process (tracemalloc)")
    caches = [_one_cache(count, spread) for spread in SPREADS]
    worst = max(caches, key=lambda c: c["bytes_per_key"])
    b.results["gate_memory"] = {
        "keys": count,
        "bytes_per_key": worst["bytes_per_key"],  # the target's figure: the larger
        "caches": caches,
    }
    say(
        "gate memory: "
        + ", ".join(
            f"{c['bytes_per_key']:.0f} B/key ({c['keys_per_account']} per account)" for c in caches
        )
    )
