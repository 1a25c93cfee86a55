"""The edge's core: the running parts every request's path reaches, made once by the lifespan
(aitbc_api.lifespan) and kept in the app's state.

The middleware puts them in each request's context (aitbc_api.pipeline.middleware), so the
gate and the forwarder reach each part with an attribute read and no lookup per request. The
management routes and the dashboard are given what they need by dependency injection instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

    from aitbc_api.pipeline.auth import Authenticator
    from aitbc_api.pipeline.limits import RateLimiter
    from aitbc_api.pipeline.rate_limit_headers import RateLimitHeaders
    from aitbc_api.pipeline.usage_events import UsagePublisher
    from aitbc_api.settings import Settings
    from aitbc_contracts.identity import UpstreamIdentity


class Load:
    """How busy this process is: the HTTP requests it is serving now (the middleware counts)."""

    __slots__ = ("in_flight",)

    def __init__(self) -> None:
        self.in_flight = 0


@dataclass(frozen=True, slots=True)
class Edge:
    settings: Settings
    authenticator: Authenticator
    limiter: RateLimiter
    rate_limit_headers: RateLimitHeaders
    usage_publisher: UsagePublisher
    upstream: aiohttp.ClientSession  # the pooled session every forwarded request goes through
    load: Load
    identity: UpstreamIdentity | None = None  # signs each caller's identity for the upstream
