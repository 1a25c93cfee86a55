"""The request types the edge's handlers take: any user, any auth, the app's State."""

from __future__ import annotations

from typing import Any, TypeAlias

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State

Req: TypeAlias = Request[Any, Any, State]
Conn: TypeAlias = ASGIConnection[Any, Any, Any, State]
