"""The edge's running parts, made by the app's lifespan and kept in the app's state as one.

A request's context holds them (aitbc_api.middleware), so it reaches each part with an
attribute read: every `app.state.x` is a Python call, and a request used to make several.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

    from aitbc_api.auth import Authenticator
    from aitbc_api.clients import KeysClient, UsageClient
    from aitbc_api.dashboard.sessions import SessionStore
    from aitbc_api.limits import RateLimiter
    from aitbc_api.settings import Settings
    from aitbc_api.usage_events import UsagePublisher


@dataclass(frozen=True, slots=True)
class Edge:
    settings: Settings
    authenticator: Authenticator
    limiter: RateLimiter
    usage_publisher: UsagePublisher
    upstream: aiohttp.ClientSession  # the pooled session every forwarded request goes through
    keys_client: KeysClient
    usage_client: UsageClient
    dashboard_sessions: SessionStore
