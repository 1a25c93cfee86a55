"""ASGI, as the gate sees it: plain dicts and callables. Each framework types its scopes and
messages its own way (Litestar's TypedDicts, Starlette's MutableMappings); the gate takes any."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

Scope: TypeAlias = Any  # an ASGI connection scope (a dict)
Message: TypeAlias = Any  # an ASGI event (a dict)
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
