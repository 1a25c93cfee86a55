"""Rate-limit decisions and the usage stream's schema.

`UsageEvent` is the documented schema analytics consumers read from the `AITBC_USAGE` stream:
one JSON message per request on `aitbc.usage.events.<partition>.<account_id>`, with
`Nats-Msg-Id` set to the request id (so a retried publish is never counted twice).
It never carries a key, only the public key id.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Literal

import msgspec

DEFAULT_PLAN_LIMITS: dict[str, int] = {"free": 60, "pro": 600, "enterprise": 6000}
WINDOW_SECONDS = 60

Outcome = Literal["admitted", "limited", "fail_open", "fail_closed", "unauthenticated"]


def plan_limits_from_env() -> dict[str, int]:
    """PLAN_LIMITS="free=60,pro=600,enterprise=6000" overrides or adds plans."""
    limits = dict(DEFAULT_PLAN_LIMITS)
    for item in os.environ.get("PLAN_LIMITS", "").split(","):
        name, _, value = item.partition("=")
        if name.strip() and value.strip().isdigit():
            limits[name.strip()] = int(value)
    return limits


# --- decisions (request/reply, batched) ----------------------------------------------------


class Decide(msgspec.Struct, frozen=True, array_like=True):
    account_id: str
    key_id: str
    key_limit: int | None = None  # the key's own lower limit, from its KeyFacts
    plan: str = ""  # the edge's view, used only while the keys service cannot be asked


class DecideBatch(msgspec.Struct, frozen=True):
    items: list[Decide]


class Decision(msgspec.Struct, frozen=True, array_like=True):
    admitted: bool
    limit: int
    remaining: int
    reset: int  # Unix seconds when the current window ends
    code: str = ""  # set when the item itself was refused (unknown account, bad input)


class DecisionBatch(msgspec.Struct, frozen=True):
    decisions: list[Decision]


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


class UsageSeries(msgspec.Struct, frozen=True, tag="usage_series"):
    account_id: str
    key_id: str | None
    minutes: list[MinuteUsage]


class LastUsed(msgspec.Struct, frozen=True, tag="last_used"):
    keys: dict[str, datetime]


# --- the usage stream ----------------------------------------------------------------------


class UsageEvent(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="usage.request.v1"
):
    event_id: str  # unique per event: the stream's de-duplication id
    request_id: str
    account_id: str
    key_id: str
    method: str
    route: str  # the route template, ids replaced: /v1/jobs/{id}
    status: int
    latency_ms: float
    decision: Outcome
    at: datetime


decide_batch_decoder = msgspec.json.Decoder(DecideBatch)
decision_batch_decoder = msgspec.json.Decoder(DecisionBatch)
usage_event_decoder = msgspec.json.Decoder(UsageEvent)
usage_query_decoder: msgspec.json.Decoder[UsageQuery | LastUsedQuery] = msgspec.json.Decoder(
    UsageQuery | LastUsedQuery
)
