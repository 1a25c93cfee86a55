"""Rate-limit decisions and the usage stream's schema.

`UsageEvent` is the documented schema of one request through the edge, which analytics
consumers read from the `AITBC_USAGE` stream. The edge publishes them in batches: one
`UsageBatch` message per partition per flush on `aitbc.usage.events.<partition>.batch`, with
`Nats-Msg-Id` set to a batch id (a retried publish sends the same bytes under the same id, so
the stream stores it once). Older streams may also hold single events, one message per
request on `aitbc.usage.events.<partition>.<account_id>`. `usage_events_of` reads both.
An event never carries a key, only the public key id.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

DEFAULT_PLAN_LIMITS: dict[str, int] = {"free": 60, "pro": 600, "enterprise": 6000}
WINDOW_SECONDS = 60

# shadow_limited: a request its limits would have refused, admitted in shadow mode
Outcome = Literal[
    "admitted", "limited", "fail_open", "fail_closed", "unauthenticated", "shadow_limited"
]


def plan_limits_from_env(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """PLAN_LIMITS="free=60,pro=600,enterprise=6000" overrides or adds plans; `env`: the
    process's environment unless given."""
    env = os.environ if env is None else env
    limits = dict(DEFAULT_PLAN_LIMITS)
    for item in env.get("PLAN_LIMITS", "").split(","):
        name, _, value = item.partition("=")
        if name.strip() and value.strip().isdecimal():
            limits[name.strip()] = int(value)
    return limits


# --- decisions (request/reply, batched) ----------------------------------------------------

# Leases: far from its limit, an account's decision may lend the asking edge a few units, which
# it admits from without asking (aitbc_contracts.ratelimit.lease_size says how many). While a
# lease is in use, the edge renews it ahead of need (a Decide with `renew`: units lent, no
# request admitted), so a steady flow never waits for a decision. The edge admits from a lease
# until LEASE_SECONDS after it was last lent to, then settles it: it says how many units it
# did not use, and those go back. A lease not settled LEASE_DUE_SECONDS after it was last lent
# to counts as wholly used (its edge is gone). Until then a refusal of the account waits for
# it to be settled, so a request is refused only when the units are really used.
#
# Limits below LEASE_MIN_LIMIT are never lent: their requests are few, so asking costs little,
# and every request's X-RateLimit-Remaining is then exact across edges. Under a lease, an edge
# counts its own requests down from what the decision left; other edges' requests meanwhile
# show in its next decision: X-RateLimit-Remaining is then that edge's view. What is admitted
# stays exact either way.
LEASE_MIN_LIMIT = 1000
LEASE_SECONDS = 0.2
LEASE_DUE_SECONDS = 0.35  # below the edge's decision timeout: a waiting refusal still arrives


# An account's or a key's id in a decision or a usage event: at most 64 characters
# (ids are 20), as the aggregates store them. Decisions count them in the partition's windows,
# saved whole in one KV message: made-up ids of any length could outgrow it, and no count of
# the partition would be saved any more.
UsageId = Annotated[str, msgspec.Meta(max_length=64)]


# gc=False on the hot path's messages: they hold scalars only (and a Settle), so no cycle can
# form; untracked, the many made per second cost the garbage collector nothing.
class Settle(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An edge's account of a lease it held: of the `granted` units lent for the window ending
    at `reset`, `unused` were not admitted."""

    account_id: str
    granted: int
    unused: int
    reset: int


class Settlements(msgspec.Struct, frozen=True):
    """Leases an edge gives back on their own (published, no reply), when no decision of the
    same account would carry them."""

    items: list[Settle]


class Decide(msgspec.Struct, frozen=True, array_like=True, gc=False):
    account_id: UsageId
    key_id: UsageId
    key_limit: int | None = None  # the key's own lower limit, from its KeyFacts
    plan: str = ""  # the edge's view, used only while the keys service cannot be asked
    lease: int = 0  # units the edge asks to be lent beyond this request (none: 0)
    settles: Settle | None = None  # the edge's previous lease of this account, settled
    renew: bool = False  # no request to admit: more units for a lease the edge is using
    shadow: bool = False  # the key's limits are only reported (the plan's may be too)


class DecideBatch(msgspec.Struct, frozen=True):
    items: list[Decide]


class Decision(msgspec.Struct, frozen=True, array_like=True, gc=False):
    admitted: bool
    limit: int
    remaining: int
    reset: int  # Unix seconds when the current window ends
    code: str = ""  # set when the item itself was refused (unknown account, bad input)
    lease: int = 0  # units lent to the edge beyond this request; `remaining` leaves them in
    # (for a renewal, `admitted` says whether any were lent, and `remaining` is before them)
    # The window `limit`, `remaining` and `reset` are of, in seconds (1, 60 or 86400): the one
    # that refused, else the one closest to refusing (aitbc_contracts.windows).
    window: int = WINDOW_SECONDS
    shadow: bool = False  # refused by `window`, but admitted: its limits are only reported


class DecisionBatch(msgspec.Struct, frozen=True):
    decisions: list[Decision]
    # The deciding process's epoch for the partition (aitbc_runtime.ownership): an edge that has
    # seen a higher one ignores the answer, which a deposed holder sent. 0: no leases (older).
    epoch: int = 0


# A batch sent to a process that no longer holds the partition is answered with a Rejected of
# this code: the edge asks again, and the partition's new holder answers.
PARTITION_MOVED = "PARTITION_MOVED"


# --- usage queries (request/reply) ---------------------------------------------------------


class UsageQuery(msgspec.Struct, frozen=True, tag="usage_query"):
    account_id: str
    start: datetime
    end: datetime
    key_id: str | None = None


class LastUsedQuery(msgspec.Struct, frozen=True, tag="last_used_query"):
    account_id: str


class MinuteUsage(msgspec.Struct, frozen=True):
    minute: datetime
    requests: int
    admitted: int
    limited: int
    status_2xx: int = 0
    status_3xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    shadow_limited: int = 0  # admitted (and in `admitted`) in shadow mode: would have been limited


class UsageSeries(msgspec.Struct, frozen=True, tag="usage_series"):
    account_id: str
    key_id: str | None
    minutes: list[MinuteUsage]


class LastUsed(msgspec.Struct, frozen=True, tag="last_used"):
    keys: dict[str, datetime]


# --- the usage stream ----------------------------------------------------------------------


# What the aggregates can store: an event's minute needs a UTC offset. An event outside these
# bounds (and UsageId's) is refused at decode, alone.
AwareDateTime = Annotated[datetime, msgspec.Meta(tz=True)]


class UsageEvent(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="usage.request.v1", gc=False
):
    event_id: str  # unique per event
    request_id: str
    account_id: UsageId
    key_id: UsageId
    method: str
    route: str  # the route template, ids replaced: /v1/jobs/{id}
    status: int
    latency_ms: float
    decision: Outcome
    at: AwareDateTime


class UsageBatch(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="usage.batch.v1"):
    """One partition's events from one flush of an edge, in the order they happened."""

    events: list[UsageEvent]


class _LooseBatch(msgspec.Struct, tag_field="type", tag="usage.batch.v1"):
    """A batch whose events are read one by one: one bad event costs only itself."""

    events: list[msgspec.Raw]


decide_batch_decoder = msgspec.json.Decoder(DecideBatch)
settlements_decoder = msgspec.json.Decoder(Settlements)
decision_batch_decoder = msgspec.json.Decoder(DecisionBatch)
usage_query_decoder: msgspec.json.Decoder[UsageQuery | LastUsedQuery] = msgspec.json.Decoder(
    UsageQuery | LastUsedQuery
)
_usage_message_decoder: msgspec.json.Decoder[UsageEvent | UsageBatch] = msgspec.json.Decoder(
    UsageEvent | UsageBatch
)
_loose_batch_decoder = msgspec.json.Decoder(_LooseBatch)
_usage_event_decoder = msgspec.json.Decoder(UsageEvent)


def usage_events_of(data: bytes, problems: list[str] | None = None) -> list[UsageEvent]:
    """The events in one message of the usage stream, of either tag: a single event
    (`usage.request.v1`) or a batch (`usage.batch.v1`). What cannot be read is left out, and
    said in `problems`: a bad event in a batch never costs the good ones beside it."""
    problems = problems if problems is not None else []
    try:
        message = _usage_message_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        events = _salvage(data, exc, problems)
    else:
        events = message.events if isinstance(message, UsageBatch) else [message]
    return _storable(events, problems)


def _storable(events: list[UsageEvent], problems: list[str]) -> list[UsageEvent]:
    """The events the aggregates can store. Not one whose time has no date in UTC (year 1
    east of UTC is year 0 there, 9999 late west of it year 10000: no datetime holds them), nor
    one with a NUL in an id, which PostgreSQL's text cannot hold: a store that failed on one
    would fail on it every time it is read, and count nothing after it."""
    if all(_fits(event) for event in events):
        return events  # the common case
    storable = []
    for number, event in enumerate(events):
        if _fits(event):
            storable.append(event)
        else:
            problems.append(f"event {number}: no UTC date for its time, or a NUL in an id")
    return storable


def _fits(event: UsageEvent) -> bool:
    if "\x00" in event.account_id or "\x00" in event.key_id:
        return False
    if 1 < event.at.year < 9999:
        return True
    try:
        event.at.astimezone(UTC)
    except OverflowError:
        return False
    return True


def _salvage(data: bytes, error: msgspec.MsgspecError, problems: list[str]) -> list[UsageEvent]:
    try:
        batch = _loose_batch_decoder.decode(data)
    except msgspec.MsgspecError:
        problems.append(str(error))  # not a batch at all: the first error says why
        return []
    events = []
    for number, raw in enumerate(batch.events):
        try:
            events.append(_usage_event_decoder.decode(raw))
        except msgspec.MsgspecError as exc:
            problems.append(f"event {number} of a batch: {exc}")
    return events
