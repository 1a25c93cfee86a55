"""What the keys service answers when it cannot do what was asked: a Rejected, never silence,
and never an exception across the wire."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc

from aitbc_contracts import messages as m

log = logging.getLogger("aitbc_keys")

T = TypeVar("T")

UNAVAILABLE = "the keys database is unavailable; try again"


def rejected(code: str, message: str) -> bytes:
    return m.encoder.encode(m.Rejected(code=code, message=message))


FAILED = rejected(m.Code.INTERNAL_ERROR, "the keys service failed; try again")


def database_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or cannot take the change now (down, restarting, its
    connections cut, locked): the caller should try again later, it is not a bug of ours."""
    if isinstance(exc, sa_exc.DBAPIError):
        # statement None: the error came while connecting
        return (
            exc.connection_invalidated
            or exc.statement is None
            or isinstance(exc, sa_exc.OperationalError)
        )
    return isinstance(exc, sa_exc.TimeoutError | OSError | TimeoutError)


async def guard(handle: Callable[[T], Awaitable[bytes]], request: T) -> bytes:
    """The last line of defence: whatever happens, the caller gets a Rejected, not silence."""
    try:
        return await handle(request)
    except Exception:
        log.exception("unhandled error in a keys handler")
        return FAILED
