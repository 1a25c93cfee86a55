"""The gate's metrics (prometheus_client), the edge's and any gated app's; the edge serves them on
the operators' port (aitbc_runtime.metrics). Labels take a few known values each: never a key,
a hash or an id. The hot path's series are bound once here (`.labels()` looks a child up under
a lock), and what is counted per request is a Tally (aitbc_runtime.tallies)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from aitbc_runtime.metrics import SECONDS
from aitbc_runtime.tallies import Tally

REQUESTS = Histogram(
    "aitbc_http_request_duration_seconds",
    "Requests answered by the edge, by route template, method and status",
    ["route", "method", "status"],
    buckets=SECONDS,
)

# Counted per request: Tallies (plain ints), not Counters (a lock per increment).
DECISIONS = Tally(
    "aitbc_ratelimit_decisions",
    "Rate-limit decisions by outcome (admitted, limited, unavailable: the fail-closed 503) and "
    "source (lease: this edge's leased units; bus: the usage service; fallback: the fail policy)",
    ("outcome", "source"),
)
LEASED = DECISIONS.labels("admitted", "lease")
DECIDED = {True: DECISIONS.labels("admitted", "bus"), False: DECISIONS.labels("limited", "bus")}
FELL_BACK = {
    True: DECISIONS.labels("admitted", "fallback"),
    False: DECISIONS.labels("limited", "fallback"),
}
FAILED_CLOSED = DECISIONS.labels("unavailable", "fallback")
DECISION_SECONDS = Histogram(
    "aitbc_ratelimit_decision_seconds",
    "Round trip of a rate-limit decision asked of the usage service (answered or not)",
    buckets=SECONDS,
)

AUTH_CACHE = Tally(
    "aitbc_auth_cache",
    "API keys looked up in the edge's auth cache: hit, miss (asked of the keys service), "
    "negative (known not to be a key), stale (served unchecked while the keys service is away)",
    ("result",),
)
CACHE_HIT = AUTH_CACHE.labels("hit")
CACHE_MISS = AUTH_CACHE.labels("miss")
CACHE_NEGATIVE = AUTH_CACHE.labels("negative")
CACHE_STALE = AUTH_CACHE.labels("stale")

BATCHES = Counter(
    "aitbc_bus_batches_total",
    "NATS requests carrying batches, by kind (key-checks, decisions, usage-events: a usage "
    "partition's events of one flush, stored in the usage stream)",
    ["batch"],
)
BATCH_SIZE = Histogram(
    "aitbc_bus_batch_size",
    "Items per batch sent on NATS, by kind (key-checks, decisions)",
    ["batch"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

USAGE_BATCHES = BATCHES.labels("usage-events")
USAGE_EVENTS_PUBLISHED = Counter(
    "aitbc_usage_events_published_total", "Usage events stored in the usage stream"
)
USAGE_EVENTS_DROPPED = Counter(
    "aitbc_usage_events_dropped_total",
    "Usage events dropped: the buffer was full, or the edge stopped with the stream away",
)
USAGE_EVENTS_BUFFERED = Gauge(
    "aitbc_usage_events_buffered",
    "Usage events waiting to be published",
    multiprocess_mode="livesum",  # a server's workers: theirs summed (aitbc_runtime.metrics)
)
EDGES_ALIVE = Gauge(
    "aitbc_edges_alive",
    "Edges this one knows to be alive, itself included: each admits its share of the overall "
    "sign-up and sign-in budgets, and of an account's limit when it fails open",
    multiprocess_mode="livemax",  # a server's workers each see them all: one count
)

THROTTLED = Counter(
    "aitbc_throttled_total",
    "Requests refused by a client budget: invalid-keys (too many invalid keys from an "
    "address), sign-up, sign-in",
    ["budget"],
)
INVALID_KEYS_THROTTLED = THROTTLED.labels("invalid-keys")
