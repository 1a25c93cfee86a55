"""What the KV buckets hold, as the AsyncAPI document describes it (aitbc_contracts.
asyncapi_catalog). The services keep their own types; tests/unit/test_docs.py keeps the two
the same."""

from __future__ import annotations

import msgspec


class UsageCounters(msgspec.Struct):
    """A usage partition's counts for the current minute (and second and UTC day, of plans
    with those windows), so a restart or a handover keeps them."""

    minute: int  # Unix minutes (seconds // 60)
    accounts: dict[str, int]  # account id -> admitted requests this minute
    keys: dict[str, int]  # key id -> admitted requests this minute (keys with their own limit)
    # account id -> units lent to edges and not yet settled (counted in `accounts`): the next
    # holder takes their settlements after a handover
    leased: dict[str, int] = {}
    second: int = -1  # Unix seconds
    seconds: dict[str, int] = {}  # account id -> admitted requests this second (burst limits)
    day: int = -1  # Unix days (seconds // 86400, UTC)
    days: dict[str, int] = {}  # account id -> admitted requests this day (daily quotas)


class DashboardSession(msgspec.Struct, kw_only=True):
    """A signed-in dashboard session, shared by every edge. Never the key: its SHA-256."""

    account_id: str
    key_id: str  # the master key's id
    key_hash: str  # SHA-256 of the master key, re-checked on every request
    started: float  # Unix seconds
    seen: float  # Unix seconds of the last request (written at most every few seconds)
    digest: str  # SHA-256 of the cookie's token: the entry's key
    csrf_token: str
    notice: str = ""  # a message for the next page


class Listed(msgspec.Struct, array_like=True):
    """A session in its account's list: [digest, started]."""

    digest: str  # the session's entry key
    started: float  # Unix seconds


class AccountSessions(msgspec.Struct):
    """An account's dashboard sessions, oldest first (some may have ended since): a sign-in
    past DASHBOARD_SESSIONS_PER_ACCOUNT ends the oldest. Written with compare-and-set."""

    sessions: list[Listed]
