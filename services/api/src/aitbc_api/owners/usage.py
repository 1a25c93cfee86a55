"""`GET /v1/usage`: the caller's own per-minute series, from the usage aggregates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
from litestar import get
from litestar.di import Provide
from litestar.params import Parameter

from aitbc_api.errors import AUTHENTICATED, documented
from aitbc_api.owners.dependencies import caller, provide_key_manager
from aitbc_api.owners.key_manager import KeyManager
from aitbc_contracts import messages as m
from aitbc_contracts.usage import MinuteUsage
from aitbc_gate.errors import ApiError

MAX_RANGE = timedelta(days=31)


class Usage(msgspec.Struct, frozen=True):
    account_id: str
    key_id: str | None
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    minutes: list[MinuteUsage] = []


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _invalid(message: str) -> ApiError:
    return ApiError(400, m.Code.VALIDATION_ERROR, message)


@get(
    "/v1/usage",
    responses=documented(*AUTHENTICATED),
    dependencies={
        "caller": Provide(caller),
        "account": Provide(provide_key_manager, sync_to_thread=False),
    },
    tags=["usage"],
    summary="Usage per minute",
    operation_id="getUsage",
)
async def usage(
    account: KeyManager,
    start: Annotated[datetime | None, Parameter(query="from")] = None,
    end: Annotated[datetime | None, Parameter(query="to")] = None,
    key_id: str | None = None,
) -> Usage:
    """Requests, admitted, limited and status classes per minute, for the account or one key.

    Defaults to the last hour; at most 31 days at a time. A standard key may be kept to its own
    requests, or from usage altogether, by the edge's STANDARD_KEY_USAGE setting (403).
    """
    try:
        end = _utc(end) if end else datetime.now(UTC)
        start = _utc(start) if start else end - timedelta(hours=1)
    except OverflowError:  # 9999-12-31T23:00-05:00, or an hour before 0001-01-01T00:30Z
        raise _invalid("'from' and 'to' must be times of years 1 to 9999 in UTC") from None
    if start >= end:
        raise _invalid("'from' must be before 'to'")
    if end - start > MAX_RANGE:
        raise _invalid("at most 31 days at a time")
    key_id = _readable(account, key_id)
    if key_id is not None:
        await account.get_key(key_id)  # 404 unless it is one of this account's keys
    minutes = await account.usage(start, end, key_id)
    return Usage(account.account_id, key_id, start, end, minutes)


def _readable(account: KeyManager, key_id: str | None) -> str | None:
    """The key whose usage the caller may read (None: the whole account's). A master key reads
    any; a standard key as STANDARD_KEY_USAGE says: the account's ("account"), only its own
    ("own": asked for nothing, it gets its own), or nothing ("none")."""
    caller = account.principal
    scope = account.services.standard_key_usage
    if caller.is_master or scope == "account":
        return key_id
    if scope == "own" and key_id in (None, caller.key_id):
        return caller.key_id
    raise ApiError(
        403,
        m.Code.FORBIDDEN,
        "A standard key reads its own usage only"
        if scope == "own"
        else "Usage is read with the account's master key",
    )
