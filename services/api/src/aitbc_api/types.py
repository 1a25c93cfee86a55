"""The request types the edge's handlers take: any user, any auth, the app's State."""

from __future__ import annotations

from typing import Any, TypeAlias

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import ValidationException

Req: TypeAlias = Request[Any, Any, State]
Conn: TypeAlias = ASGIConnection[Any, Any, Any, State]


class EdgeRequest(Request[Any, Any, State]):
    """The edge's request class. A JSON body is decoded whole before it is checked against its
    route's type, so one nested deeper than the decoder follows (`[[[[...`) fails there: that
    is a bad body (400 VALIDATION_ERROR), not an internal error."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            raise ValidationException("The JSON body is nested too deeply") from None
